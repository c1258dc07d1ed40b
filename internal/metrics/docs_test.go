package metrics

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var metricName = regexp.MustCompile(`\bpgb_[a-z_]+\b`)

// The example alert rules parse and name only metrics pgb exports, and
// docs/metrics.md documents every metric: neither can rot when a metric changes.
func TestAlertRulesAndDocsNameRealMetrics(t *testing.T) {
	b, err := os.ReadFile("../../scripts/packaging/prometheus-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	names := Names()
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			used := metricName.FindAllString(r.Expr, -1)
			if r.Alert == "" || len(used) == 0 {
				t.Errorf("rule %q: expr %q names no pgb metric", r.Alert, r.Expr)
			}
			for _, m := range used {
				if !slices.Contains(names, m) {
					t.Errorf("rule %s uses %s, which pgb does not export", r.Alert, m)
				}
			}
		}
	}
	for _, want := range []string{"PgbNoWALArchived", "PgbNoRecentBackup", "PgbDrillFailed", "PgbNoRecentDrill", "PgbWindowShorterThanPromised", "PgbNothingRecoverable", "PgbVerifyFailed"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.Contains(string(doc), "`"+n+"`") {
			t.Errorf("docs/metrics.md does not document %s", n)
		}
	}
	for _, m := range metricName.FindAllString(string(doc), -1) {
		if !slices.Contains(names, m) && !strings.HasPrefix(m, "pgb_drill_") {
			t.Errorf("docs/metrics.md names %s, which pgb does not export", m)
		}
	}
}
