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
