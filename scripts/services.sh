#!/usr/bin/env bash
# Make sure the services the integration tests talk to are up: Redis on 127.0.0.1:6379 and
# PostgreSQL on 127.0.0.1:5432. Starts them when installed but stopped; never stops them.
set -euo pipefail

redis_up() { command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! redis_up; then
    if command -v redis-server >/dev/null; then
        echo "services: starting redis-server on 127.0.0.1:6379"
        mkdir -p /tmp/aam-redis
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
            --dir /tmp/aam-redis --logfile /tmp/aam-redis/redis.log
        for _ in $(seq 50); do redis_up && break; sleep 0.1; done
    fi
fi
redis_up && echo "services: redis ok" || echo "services: redis not available"

pg_up() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_up && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 50); do pg_up && break; sleep 0.2; done
fi
pg_up && echo "services: postgresql ok" || echo "services: postgresql not available"

# docker-compose (Debian's package) validates the compose files in `make test`; no engine needed.
if ! command -v docker-compose >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "services: installing docker-compose (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1; } \
        || true
fi
command -v docker-compose >/dev/null && echo "services: docker-compose ok" \
    || echo "services: docker-compose not available"

# Debian's Chromium for the browser tests (Playwright drives it; Playwright's own browser
# download is not reachable from the build machines).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "services: installing chromium (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
        || true
fi
command -v chromium >/dev/null && echo "services: chromium ok" || echo "services: chromium not available"
