# Sourced by bench/viewers.sh and bench/overload.sh: a synthetic library,
# and kinema serve or nginx serving it on loopback, one at a time, pinned to
# CPU 0 (nginx with one worker). The caller sets BIN (the kinema binary),
# WORK (a scratch directory), KINEMA_PORT and NGINX_PORT, and may set
# SERVER_WRAP (a command that runs its arguments, e.g. in a CPU-limited
# cgroup) and KINEMA_FLAGS (extra flags of kinema serve). start_server sets
# SERVER_PID and URL (the multivariant playlist).

NAME=${NAME:-$(basename "$0")}
SERVER_PID=

# The library: playlists and segment files of the exact sizes a 0.3–6 Mbit/s
# ladder implies (the client counts bytes, it does not decode).
make_library() {
    "$BIN" bench library --library "$WORK/library" --id synthetic \
        --bitrates 0.3mbit,0.8mbit,1.5mbit,3mbit,6mbit --segment 4s --segments 15
    local generation
    generation=$(jq -r .generation "$WORK/library/videos/synthetic/manifest.json")
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 65536;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
daemon off;
events { worker_connections 30000; }
http {
    sendfile on;
    tcp_nopush on;
    open_file_cache max=10000 inactive=60s;
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    types {
        application/vnd.apple.mpegurl m3u8;
        video/mp4 mp4;
        video/iso.segment m4s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        # The stable URL of the multivariant playlist is the current
        # generation's; everything it leads to is under g{N}/.
        location = /v/synthetic/master.m3u8 { alias $WORK/library/videos/synthetic/g$generation/master.m3u8; }
        location /v/ { alias $WORK/library/videos/; }
    }
}
CONF
}

# Polls until the URL answers 200, for at most 10 s.
wait_ready() {
    local url=$1 deadline=$((SECONDS + 10))
    until curl -sf -o /dev/null "$url"; do
        if [ $SECONDS -ge $deadline ]; then
            echo "$NAME: $url never became ready ($(curl -s -o /dev/null -w '%{http_code}' "$url"))" >&2
            tail -5 "$WORK/nginx/error.log" 2>/dev/null >&2 || true
            exit 1
        fi
        sleep 0.1
    done
}

# Refuses a port something already listens on: the run would measure that
# server instead.
check_free() {
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; then
        echo "$NAME: port $1 is in use; set KINEMA_PORT / NGINX_PORT" >&2
        exit 1
    fi
}

start_server() {
    case $1 in
    kinema)
        check_free "$KINEMA_PORT"
        # shellcheck disable=SC2086 # KINEMA_FLAGS is a list of flags
        KINEMA_LOG=warn ${SERVER_WRAP:-} taskset -c 0 "$BIN" serve --library "$WORK/library" \
            --listen "127.0.0.1:$KINEMA_PORT" --access-log false ${KINEMA_FLAGS:-} &
        SERVER_PID=$!
        URL="http://127.0.0.1:$KINEMA_PORT/v/synthetic/master.m3u8"
        ;;
    nginx)
        check_free "$NGINX_PORT"
        ${SERVER_WRAP:-} taskset -c 0 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
        SERVER_PID=$!
        URL="http://127.0.0.1:$NGINX_PORT/v/synthetic/master.m3u8"
        ;;
    esac
    wait_ready "$URL"
}

stop_server() {
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
