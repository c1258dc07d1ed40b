# scripts/versitygw.sh — sourced by the benchmark scripts (bench-s3, bench-stream): a
# local S3 server for a tool's repository. versitygw, POSIX backend over GWROOT, on a free
# loopback port, HTTPS with a throwaway self-signed certificate (CERT) every tool
# verifies, keep-alive, one bucket (BUCKET). Expects ROOT, WORK, GWROOT, BUCKET, KEY,
# SECRET, REGION and the shared harness's log/die; start_versitygw sets VERSITYGW, CERT,
# PORT, ENDPOINT, GW_PID and GWVER. The caller stops GW_PID.

start_versitygw() {
  local c up
  if [ -z "${VERSITYGW:-}" ]; then
    for c in "$ROOT/.build/bin/versitygw" "$ROOT/../main/.build/bin/versitygw"; do
      [ -x "$c" ] && { VERSITYGW=$c; break; }
    done
  fi
  if [ -z "${VERSITYGW:-}" ]; then
    "$ROOT/scripts/install-test-servers" >&2
    VERSITYGW=$ROOT/.build/bin/versitygw
  fi

  mkdir -p "$GWROOT"
  CERT=$WORK/s3.crt
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1" \
    -keyout "$WORK/s3.key" -out "$CERT" 2>/dev/null
  chmod 644 "$CERT"
  PORT=${S3_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  ENDPOINT=https://127.0.0.1:$PORT
  "$VERSITYGW" --port "127.0.0.1:$PORT" --access "$KEY" --secret "$SECRET" --region "$REGION" \
    --cert "$CERT" --key "$WORK/s3.key" --keep-alive --health /health --quiet posix "$GWROOT" \
    >"$WORK/versitygw.log" 2>&1 &
  GW_PID=$!
  up=0
  for _ in $(seq 1 300); do   # poll its health check for up to about 30 s
    if curl -fs --cacert "$CERT" "$ENDPOINT/health" >/dev/null 2>&1; then up=1; break; fi
    kill -0 "$GW_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ $up = 1 ] || { cat "$WORK/versitygw.log" >&2; die "versitygw did not come up on $ENDPOINT"; }
  curl -fsS --cacert "$CERT" --aws-sigv4 "aws:amz:$REGION:s3" -u "$KEY:$SECRET" -X PUT "$ENDPOINT/$BUCKET" \
    -H "x-amz-content-sha256: $(sha256sum </dev/null | cut -d' ' -f1)" >/dev/null ||
    die "could not create bucket $BUCKET"
  GWVER=$(cat "$(dirname "$VERSITYGW")/.versitygw.version" 2>/dev/null || echo "version unknown")
}
