#!/bin/sh
# Installs the system programs the tests use when they are missing: Debian's Prometheus
# (promtool) and Alertmanager, and systemd-analyze (Debian: systemd, which checks
# deploy/systemd/). hadolint, kubectl and the schema validators come from the pip dev
# extra (pyproject.toml). PostgreSQL 15 server binaries are expected under
# /usr/lib/postgresql/15/bin (FORUM_MONITOR_PG_BIN overrides). Without root or apt-get
# (a laptop), it only says what is missing; the tests that need it then skip,
# except under FORUM_MONITOR_TEST_STRICT=1 (CI), where they fail.
set -eu
missing=""
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v prometheus-alertmanager >/dev/null 2>&1 || missing="$missing prometheus-alertmanager"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
[ -x "${FORUM_MONITOR_PG_BIN:-/usr/lib/postgresql/15/bin}/initdb" ] || missing="$missing postgresql-15"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "not installed:$missing (tests that need them will skip)"
fi
