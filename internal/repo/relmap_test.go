package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

func testRelMap() *RelMap {
	return &RelMap{Databases: []RelDatabase{{OID: 5, Name: "postgres", Relations: []Relation{
		{OID: 16384, Filenode: 16390, Schema: "public", Name: "orders", Kind: "r"},
		{OID: 16387, Filenode: 16387, Tablespace: 16500, Schema: "public", Name: "orders_pkey", Kind: "i"},
	}}}}
}

func TestRelMapIsReadBackAndDeletedWithItsBackup(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := New(st, Options{})
	want := testRelMap()
	if err := r.PutRelMap(ctx, "b1", want); err != nil {
		t.Fatal(err)
	}
	if err := r.PutRelMap(ctx, "b1", testRelMap()); err != nil {
		t.Fatalf("a retried write of the same map: %v", err)
	}
	putTestBackup(t, r, "b1", 0x2000100)
	got, err := r.ReadRelMap(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read %+v, wrote %+v", got, want)
	}
	list, _, err := r.ListBackups(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("the relation map must not disturb the listing: %v %v", list, err)
	}
	if err := r.DeleteBackup(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, RelMapKey("b1")); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("the relation map outlived its backup: %v", err)
	}
	if _, err := r.ReadRelMap(ctx, "b1"); !errors.Is(err, ErrNoRelMap) {
		t.Fatalf("a backup without a map: %v, want ErrNoRelMap", err)
	}
}

func TestRelMapLargerThanAllowedIsCorrupt(t *testing.T) {
	ctx := context.Background()
	r := New(mem.New(), Options{})
	bomb := []byte(`{"format":1,"databases":[{"name":"` + strings.Repeat("x", relMapLimit) + `"}]}`)
	if err := r.putDoc(ctx, RelMapKey("b1"), bomb); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadRelMap(ctx, "b1"); !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge and ErrCorrupt", err)
	}
	if err := r.putDoc(ctx, RelMapKey("b2"), []byte(`{"format":99}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadRelMap(ctx, "b2"); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("got %v, want ErrNewerFormat", err)
	}
}

// The relation map, written as a stream, is the JSON json.Marshal makes of it.
func TestRelMapIsWrittenAsJSONMarshalWould(t *testing.T) {
	m := &RelMap{Format: RelMapFormat, Databases: []RelDatabase{
		{OID: 5, Name: `po"st<gres>`, Relations: []Relation{{OID: 1, Filenode: 2, Schema: "public", Name: "t&1", Kind: "r"}, {OID: 3, Filenode: 4, Tablespace: 9, Schema: "s", Name: "ü", Kind: "i"}}},
		{OID: 6, Name: "empty", Relations: []Relation{}},
	}}
	var got bytes.Buffer
	if err := writeRelMap(&got, m); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(m)
	if got.String() != string(want) {
		t.Errorf("written\n%s\nwant\n%s", got.String(), want)
	}
}

// A map written as a stream, database by database, is stored as PutRelMap stores it.
func TestRelMapStreamIsStoredAsPutRelMapStoresIt(t *testing.T) {
	for _, m := range []*RelMap{
		{Databases: []RelDatabase{
			{OID: 5, Name: `po"st<gres>`, Relations: []Relation{{OID: 1, Filenode: 2, Schema: "public", Name: "t&1", Kind: "r"}, {OID: 3, Filenode: 4, Tablespace: 9, Schema: "s", Name: "ü", Kind: "i"}}},
			{OID: 6, Name: "empty", Relations: []Relation{}},
			{OID: 7, Name: "one", Relations: []Relation{{OID: 8, Filenode: 8, Schema: "public", Name: "x", Kind: "r"}}},
		}},
		{Databases: []RelDatabase{}},
	} {
		ctx := context.Background()
		st := mem.New()
		r := New(st, Options{})
		if err := r.PutRelMapStream(ctx, "b1", func(w RelMapWriter) error {
			for _, d := range m.Databases {
				if err := w.Database(d.OID, d.Name); err != nil {
					return err
				}
				for _, rel := range d.Relations {
					if err := w.Relation(rel); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := r.PutRelMap(ctx, "b2", m); err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadRelMap(ctx, "b1")
		if err != nil {
			t.Fatal(err)
		}
		want, err := r.ReadRelMap(ctx, "b2")
		if err != nil {
			t.Fatal(err)
		}
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if !bytes.Equal(g, w) {
			t.Errorf("streamed map\n%s\nwant\n%s", g, w)
		}
	}
}
