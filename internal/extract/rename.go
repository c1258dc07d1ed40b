package extract

import (
	"fmt"
	"strings"
)

// Object is a relation or statistics object that goes with a table and whose name
// lives in a schema's namespace: an index (constraint-backing ones too), an owned
// sequence, an extended statistics object.
type Object struct {
	Kind   string // "index", "sequence", "statistics"
	Schema string
	Name   string
}

// Rename is one ALTER … RENAME of the plan.
type Rename struct {
	Kind     string // "table", "index", "sequence", "statistics"
	Schema   string
	Old, New string
}

// SQL is the statement that makes the rename.
func (r Rename) SQL() string {
	what := map[string]string{"table": "TABLE", "index": "INDEX", "sequence": "SEQUENCE", "statistics": "STATISTICS"}[r.Kind]
	return fmt.Sprintf("ALTER %s %s.%s RENAME TO %s", what, QuoteIdent(r.Schema), QuoteIdent(r.Old), QuoteIdent(r.New))
}

// RenameName is the rule that names an object of table old once the table is
// renamed to nw: a name that starts with old gets nw in place of that prefix
// (orders_pkey → nw_pkey, orders_id_seq → nw_id_seq); any other name gets nw and an
// underscore in front (idx_customer → nw_idx_customer).
func RenameName(old, nw, name string) string {
	if strings.HasPrefix(name, old) {
		return nw + name[len(old):]
	}
	return nw + "_" + name
}

// PlanRename is the renames that give table t the name nw, and each of its objects a
// name by RenameName. It refuses a name PostgreSQL would truncate and two objects of
// one schema that would get the same name.
func PlanRename(t Table, nw string, objs []Object) ([]Rename, error) {
	if err := checkIdent(nw); err != nil {
		return nil, fmt.Errorf("--rename-to: %w", err)
	}
	if nw == t.Name {
		return nil, fmt.Errorf("--rename-to %s is the table's own name", QuoteIdent(nw))
	}
	plan := []Rename{{Kind: "table", Schema: t.Schema, Old: t.Name, New: nw}}
	seen := map[[2]string]string{{t.Schema, nw}: "table " + Table{t.Schema, nw}.String()}
	for _, o := range objs {
		n := RenameName(t.Name, nw, o.Name)
		if err := checkIdent(n); err != nil {
			return nil, fmt.Errorf("--rename-to %s: the %s %s would be renamed %s: %w; choose a shorter name",
				QuoteIdent(nw), o.Kind, QuoteIdent(o.Name), QuoteIdent(n), err)
		}
		key := [2]string{o.Schema, n}
		if o.Kind == "statistics" {
			key[1] = "\x00stx:" + n // statistics objects have a namespace of their own
		}
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("--rename-to %s: the %s %s would be renamed %s, as %s is: choose another name",
				QuoteIdent(nw), o.Kind, QuoteIdent(o.Name), QuoteIdent(n), prev)
		}
		seen[key] = o.Kind + " " + QuoteIdent(o.Name)
		plan = append(plan, Rename{Kind: o.Kind, Schema: o.Schema, Old: o.Name, New: n})
	}
	return plan, nil
}
