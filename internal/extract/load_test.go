package extract

import "testing"

func TestTheLoadsTransactionIDIsReadFromPsqlsNotice(t *testing.T) {
	out := "psql:/tmp/x/extract-1.sql:2: NOTICE:  pgb-load-xid 4294967302\npsql:/tmp/x/extract-1.sql:40: ERROR:  boom\n"
	m := loadXIDLine.FindStringSubmatch(out)
	if m == nil || m[1] != "4294967302" {
		t.Fatalf("got %q", m)
	}
	if loadXIDLine.MatchString("psql:f:9: ERROR:  value pgb-load-xid 12 is not\n") {
		t.Fatal("an ERROR line read as the xid")
	}
}
