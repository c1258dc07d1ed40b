#!/bin/sh
# After installing or upgrading pgb (.deb and .rpm).
# /etc/pgb/pgb.yaml holds secrets: readable by the postgres group pgb runs as
# (archive_command, the timers), writable by root only. The package ships it root:root
# 0640; here it gets the postgres group, once: only while it is still root:root 0640 as
# shipped, so that an administrator's owner and mode stay, and nothing fails when the
# file was removed. Without a postgres group yet (PostgreSQL installed later):
#   chgrp postgres /etc/pgb/pgb.yaml
conf=/etc/pgb/pgb.yaml
if [ -f "$conf" ] && [ "$(stat -c '%U:%G %a' "$conf" 2>/dev/null)" = "root:root 640" ] &&
  getent group postgres >/dev/null 2>&1; then
  chgrp postgres "$conf" || echo "pgb: could not give $conf the postgres group: chgrp postgres $conf" >&2
fi
# The units are installed, never enabled or started: configure /etc/pgb/pgb.yaml first,
# then systemctl enable --now pgb-backup.timer pgb-drill.timer (and pgb-wal-stream,
# pgb-metrics).
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
