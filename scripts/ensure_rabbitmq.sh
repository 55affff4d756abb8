#!/usr/bin/env bash
# Make sure RabbitMQ answers at the broker URL's host and port: start it where it is installed,
# install it with apt-get where we may (root or password-less sudo on Debian/Ubuntu), or say
# exactly what to run and stop.
set -euo pipefail

url=${SWEEPLAB_BROKER_URL:-amqp://guest:guest@127.0.0.1:5672/%2F}
hostport=${url#*://}
hostport=${hostport#*@}
hostport=${hostport%%/*}
host=${hostport%%:*}
port=5672
[[ $hostport == *:* ]] && port=${hostport##*:}

reachable() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

wait_until_up() {
    for _ in $(seq 1 120); do
        reachable && return 0
        sleep 1
    done
    echo "RabbitMQ did not come up on $host:$port within 120 s" >&2
    return 1
}

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else
        return 1
    fi
}

if reachable; then
    echo "RabbitMQ is reachable at $host:$port"
    exit 0
fi
case $host in
    127.*|localhost|::1) ;;
    *) echo "RabbitMQ at $host:$port is not reachable; start it there (or fix SWEEPLAB_BROKER_URL)" >&2
       exit 1 ;;
esac

if ! command -v rabbitmq-server >/dev/null && [[ ! -x /usr/sbin/rabbitmq-server ]]; then
    if command -v apt-get >/dev/null && as_root true; then
        echo "Installing RabbitMQ with apt-get ..."
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server
    else
        echo "RabbitMQ is not installed. Install it, then run this again:" >&2
        echo "    sudo apt-get install rabbitmq-server     (Debian/Ubuntu)" >&2
        exit 1
    fi
fi
reachable && exit 0

echo "Starting RabbitMQ ..."
if [[ -d /run/systemd/system ]] && as_root systemctl start rabbitmq-server; then
    :
elif ! as_root env PATH="/usr/sbin:$PATH" rabbitmq-server -detached; then
    echo "Could not start RabbitMQ; start it with: sudo systemctl start rabbitmq-server" >&2
    exit 1
fi
wait_until_up
echo "RabbitMQ is up at $host:$port"
