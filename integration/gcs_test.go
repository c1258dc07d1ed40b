package integration

import (
	"testing"

	"github.com/pgb-project/pgb/internal/storage/gcs/gcstest"
)

func gcsRepo(t *testing.T, failRate float64) []string {
	sel, _ := gcsRepoBehind(t, failRate)
	return sel
}

func gcsRepoBehind(t *testing.T, failRate float64) ([]string, *faultProxy) {
	t.Helper()
	endpoint, bucket := gcstest.StartFakeGCS(t)
	var proxy *faultProxy
	if failRate > 0 {
		proxy = startFaultProxy(t, endpoint, failRate, 11)
		endpoint = proxy.URL
	}
	return configFile(t, "repo: gs://"+bucket+"/cluster1\n"+
		"gcs-endpoint: "+endpoint+"\n"+
		"gcs-chunk-size: 8MiB\n"+
		"storage-retries: 8\n"), proxy
}

func TestPITROnGCS(t *testing.T) {
	pitrOn(t, gcsRepo(t, 0))
}

func TestPITROnGCSUnderTransientFaults(t *testing.T) {
	sel, proxy := gcsRepoBehind(t, 0.15)
	pitrOn(t, sel)
	assertFaulted(t, proxy)
}
