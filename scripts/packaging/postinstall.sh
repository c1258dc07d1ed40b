#!/bin/sh
# After installing or upgrading pgb (.deb and .rpm).
set -e
# /etc/pgb/pgb.yaml holds secrets: readable by the postgres group pgb runs as (archive_command,
# the timers), writable by root only. Without a postgres group yet (PostgreSQL installed
# later), it stays root-only; then: chgrp postgres /etc/pgb/pgb.yaml
if getent group postgres >/dev/null 2>&1; then
  chown root:postgres /etc/pgb/pgb.yaml
  chmod 0640 /etc/pgb/pgb.yaml
fi
# The units are installed, never enabled or started: configure /etc/pgb/pgb.yaml first,
# then systemctl enable --now pgb-backup.timer pgb-drill.timer (and pgb-wal-stream).
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
