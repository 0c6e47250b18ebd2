#!/usr/bin/env bash
# Write a .env for docker-compose.yml: .env.example with fresh random secrets filled in.
#
#   scripts/make_env.sh [OUTPUT]     # OUTPUT defaults to .env; an existing file is never replaced
#
# Secrets are hex, so they can stand in database and broker URLs without escaping. The file is
# created with mode 600. The admin API key is the one in AAM_API_KEYS (owner "admin").
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-.env}
if [ -e "$out" ]; then
    echo "make_env: $out exists; not replacing it (delete it first to start over)" >&2
    exit 1
fi

hex() { od -An -v -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

umask 077
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
sed -e "s/^POSTGRES_PASSWORD=\$/POSTGRES_PASSWORD=$(hex 24)/" \
    -e "s/^REDIS_PASSWORD=\$/REDIS_PASSWORD=$(hex 24)/" \
    -e "s/^AAM_API_KEYS=\$/AAM_API_KEYS=admin:$(hex 24):admin/" \
    -e "s/^FLOWER_BASIC_AUTH=\$/FLOWER_BASIC_AUTH=admin:$(hex 16)/" \
    "$root/.env.example" > "$tmp"
for name in POSTGRES_PASSWORD REDIS_PASSWORD AAM_API_KEYS FLOWER_BASIC_AUTH; do
    if ! grep -Eq "^$name=.+" "$tmp"; then
        echo "make_env: .env.example has no empty '$name=' line to fill" >&2
        exit 1
    fi
done
mv "$tmp" "$out"
trap - EXIT
echo "make_env: wrote $out (mode 600); the admin API key is in AAM_API_KEYS, Flower's login in FLOWER_BASIC_AUTH"
