package mem_test

import (
	"testing"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
	"github.com/pgb-project/pgb/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return mem.New() })
}

// The store as tests above storage use it, deleting in batches of 3 keys.
func TestConformanceBatchDelete(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { s := mem.New(); s.Batch = 3; return s })
}
