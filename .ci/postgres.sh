#!/usr/bin/env bash
# Start Debian's PostgreSQL on 127.0.0.1 only, with a role and database for the multi-worker test.
# Prints the URL to use as HPO_TEST_POSTGRES_URL. Idempotent.
set -euo pipefail
cd /  # runuser -u postgres cannot enter a private checkout directory
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$ver main"; then
  pg_createcluster "$ver" main >/dev/null
fi
conf=/etc/postgresql/$ver/main/postgresql.conf
sed -i "s/^#\?listen_addresses.*/listen_addresses = '127.0.0.1'/" "$conf"
pg_ctlcluster "$ver" main start >/dev/null 2>&1 || pg_ctlcluster "$ver" main restart >/dev/null 2>&1
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c \
  "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='hpo') THEN CREATE ROLE hpo LOGIN PASSWORD 'hpo'; END IF; END \$\$;" >/dev/null
runuser -u postgres -- psql -q -tAc "SELECT 1 FROM pg_database WHERE datname='hpo'" | grep -q 1 \
  || runuser -u postgres -- createdb -O hpo hpo
echo "postgresql://hpo:hpo@127.0.0.1:5432/hpo"
