#!/usr/bin/env bash
# Turn a Debian 12 or Ubuntu 22.04/24.04 host into a running sweeplab, or upgrade one in place.
# Run it from a clone of the repository, as root; `--help` says what each flag does.
#
# What goes where: code under /opt/sweeplab (a copy of the clone's tracked files) with its own
# .venv (requirements.txt only), data under /var/lib/sweeplab, settings and secrets in
# /etc/sweeplab/sweeplab.env (0640 root:sweeplab), the units from systemd/, RabbitMQ with a
# user and virtual host of its own. Running it again installs the new code, restarts the
# units (the API migrates the database as it starts), and keeps the data, the tokens and the
# broker password, which it reads back from the env file.
set -Eeuo pipefail
umask 022
trap 'echo "provision.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

readonly PREFIX=/opt/sweeplab
readonly VENV=$PREFIX/.venv
readonly DATA_DIR=/var/lib/sweeplab
readonly CONF_DIR=/etc/sweeplab
readonly ENV_FILE=$CONF_DIR/sweeplab.env
readonly UNIT_DIR=/etc/systemd/system
readonly SERVICE_USER=sweeplab
readonly BROKER_USER=sweeplab
readonly BROKER_VHOST=sweeplab
readonly API_PORT=8080
readonly UNITS=(sweeplab-api.service sweeplab-worker.service sweeplab-aggregate.service)
# Every role: the sweeplab user (and so every script) may not reach the instance metadata.
readonly METADATA_BLOCK=sweeplab-metadata-block.service
readonly BEGIN_MARK="# BEGIN sweeplab (written by scripts/provision.sh; edits here are replaced)"
readonly END_MARK="# END sweeplab"
readonly CADDYFILE=/etc/caddy/Caddyfile
readonly CADDY_MARK="written by scripts/provision.sh --domain"
# consumer_timeout = SWEEPLAB_MAX_RUN_TIMEOUT_S (default 1500 s) plus this margin
readonly CONSUMER_MARGIN_S=600
readonly DEFAULT_MAX_RUN_S=1500
readonly SWAP_FILE=/swapfile
# Secrets (tokens, broker password) land in an env file and an AMQP URL: URL-safe characters.
readonly SECRET_RE='^[A-Za-z0-9][A-Za-z0-9._~-]{15,255}$'
readonly DOMAIN_RE='^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$'
readonly API_URL_RE='^https?://[][A-Za-z0-9.:-]+(/[A-Za-z0-9._~/-]*)?$'
readonly BROKER_URL_RE='^amqps?://[A-Za-z0-9._~%-]+:[A-Za-z0-9._~%-]+@[][A-Za-z0-9.:-]+/[A-Za-z0-9._~%-]*$'
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
readonly SRC

ROLE="" API_URL="" BROKER_URL="" WORKER_TOKEN="" BROKER_PASSWORD="" DOMAIN="" WHEELHOUSE=""
API_TOKEN="" PYTHON=python3 OS_ID="" OS_VERSION=""
DRY_RUN=0 PRINT_PACKAGES=0 PRINT_WORKER_COMMAND=0

usage() {
    cat <<'EOF'
Usage: sudo scripts/provision.sh --role all|api|worker [options]

Roles:
  --role all       the API, RabbitMQ and one local worker on this host (a micro instance)
  --role api       the API, RabbitMQ and the aggregate worker (--queues sweeplab_aggregate);
                   training happens on worker hosts
  --role worker    a training host: a remote worker (--queues sweeplab_train) that reaches the
                   API and RabbitMQ over the network; no database, no RabbitMQ here.
                   Needs --api-url, --broker-url and --worker-token (the first time; later
                   runs read them back from /etc/sweeplab/sweeplab.env)

Options:
  --api-url URL          (worker) the API's base URL as this host sees it, e.g. http://10.0.0.5:8080
  --broker-url URL       (worker) amqp://sweeplab:PASSWORD@API-HOST:5672/sweeplab
  --worker-token T       the worker token: on api/all, use T instead of generating one
  --broker-password P    (api/all) RabbitMQ password of user sweeplab, instead of generating one
  --domain NAME          (api/all) Caddy in front with HTTPS and an automatic certificate for
                         NAME; the API then listens on 127.0.0.1 only
  --wheelhouse DIR       install the Python packages from a folder of wheels, with no index
  --dry-run              say what would be done, change nothing (no root needed)
  --print-packages       print the OS packages this role needs (all roles without --role)
  --print-worker-command (on the API's host) print the --role worker command line for a
                         training host, secrets filled in from the env file
  -h, --help             this text

Tokens and passwords: 16 to 256 letters, digits, '.', '_', '~' or '-'.
Without --domain the API answers plain HTTP on port 8080 of every interface: its token crosses
the network in clear text. Reach it through a tunnel instead (ssh -L 8080:127.0.0.1:8080 admin@HOST)
or give it a domain. Running the same command again upgrades in place.
EOF
}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'provision.sh: warning: %s\n' "$*" >&2; }
die() { printf 'provision.sh: %s\n' "$*" >&2; exit 1; }

# Prints what a step does; false under --dry-run, so each step begins `announce ... || return 0`.
announce() {
    if ((DRY_RUN)); then printf 'would: %s\n' "$*"; return 1; fi
    say "$@"
}

parse_args() {
    local flag value
    while (($#)); do
        flag=$1
        case $flag in
            -h | --help) usage; exit 0 ;;
            --dry-run) DRY_RUN=1; shift; continue ;;
            --print-packages) PRINT_PACKAGES=1; shift; continue ;;
            --print-worker-command) PRINT_WORKER_COMMAND=1; shift; continue ;;
            --*=*) value=${flag#*=}; flag=${flag%%=*}; shift ;;
            --*) (($# >= 2)) || die "$flag needs a value (see --help)"; value=$2; shift 2 ;;
            *) die "unexpected argument: $flag (see --help)" ;;
        esac
        case $flag in
            --role) ROLE=$value ;;
            --api-url) API_URL=$value ;;
            --broker-url) BROKER_URL=$value ;;
            --worker-token) WORKER_TOKEN=$value ;;
            --broker-password) BROKER_PASSWORD=$value ;;
            --domain) DOMAIN=$value ;;
            --wheelhouse) WHEELHOUSE=$value ;;
            *) die "unknown option: $flag (see --help)" ;;
        esac
    done
}

validate_args() {
    case $ROLE in
        all | api | worker) ;;
        "") ((PRINT_PACKAGES || PRINT_WORKER_COMMAND)) ||
            die "--role is needed: all, api or worker (see --help)" ;;
        *) die "--role must be all, api or worker, not '$ROLE'" ;;
    esac
    if [[ $ROLE == worker ]]; then
        [[ -z $DOMAIN && -z $BROKER_PASSWORD ]] ||
            die "--domain and --broker-password belong to the API's host (--role all or api)"
    elif [[ -n $API_URL || -n $BROKER_URL ]]; then
        die "--api-url and --broker-url are for --role worker"
    fi
    if [[ -n $WHEELHOUSE ]]; then
        [[ -d $WHEELHOUSE ]] || die "--wheelhouse: no such directory: $WHEELHOUSE"
        WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd -P)
    fi
    validate_values
}

# Secrets and URLs, from the flags or read back from the env file.
validate_values() {
    [[ -z $WORKER_TOKEN || $WORKER_TOKEN =~ $SECRET_RE ]] ||
        die "--worker-token: 16 to 256 letters, digits, '.', '_', '~' or '-'"
    [[ -z $BROKER_PASSWORD || $BROKER_PASSWORD =~ $SECRET_RE ]] ||
        die "--broker-password: 16 to 256 letters, digits, '.', '_', '~' or '-'"
    [[ -z $DOMAIN || $DOMAIN =~ $DOMAIN_RE ]] || die "--domain: not a domain name: $DOMAIN"
    [[ -z $API_URL || $API_URL =~ $API_URL_RE ]] || die "--api-url: not an http(s) URL: $API_URL"
    [[ -z $BROKER_URL || $BROKER_URL =~ $BROKER_URL_RE ]] ||
        die "--broker-url: not amqp://USER:PASSWORD@HOST:PORT/VHOST"
    [[ -z $API_TOKEN || $API_TOKEN =~ $SECRET_RE ]] ||
        die "SWEEPLAB_API_TOKEN in $ENV_FILE: 16 to 256 letters, digits, '.', '_', '~' or '-'"
}

read_os() {
    [[ -r /etc/os-release ]] || die "no /etc/os-release: Debian 12 or Ubuntu 22.04/24.04 expected"
    OS_ID=$(sed -n 's/^ID=//p' /etc/os-release | tr -d '"')
    OS_VERSION=$(sed -n 's/^VERSION_ID=//p' /etc/os-release | tr -d '"')
}

# The OS packages a role needs, one a line (every role's when none is given).
os_packages() {
    # bubblewrap: every script runs in it (SWEEPLAB_SANDBOX=on in the env file); nftables: the
    # sweeplab user may not reach the instance metadata (sweeplab-metadata-block.service)
    printf '%s\n' python3 python3-venv curl bubblewrap nftables
    # Ubuntu 22.04's python3 is 3.10; sweeplab needs 3.11 (its pinned numpy and scipy too).
    [[ $OS_ID != ubuntu || $OS_VERSION != 22.04 ]] || printf '%s\n' python3.11 python3.11-venv
    [[ $ROLE == worker ]] || echo rabbitmq-server
    [[ -z $DOMAIN ]] || echo caddy
}

install_packages() {
    local package missing=()
    while read -r package; do
        # shellcheck disable=SC2016  # ${db:Status-Status} is dpkg-query's format, not bash's
        [[ $(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null) == installed ]] ||
            missing+=("$package")
    done < <(os_packages)
    if ((${#missing[@]} == 0)); then say "OS packages: all there"; return 0; fi
    announce "Installing ${missing[*]} with apt-get" || return 0
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

pick_python() {
    local candidate
    for candidate in python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            PYTHON=$(command -v "$candidate")
            return 0
        fi
    done
    ((DRY_RUN)) || die "Python 3.11 or newer is needed and none was found"
}

setup_user_and_dirs() {
    announce "System user $SERVICE_USER (no login shell), $DATA_DIR and $CONF_DIR" || return 0
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
            --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    if [[ $(getent passwd "$SERVICE_USER" | cut -d: -f7) != /usr/sbin/nologin ]]; then
        usermod --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DATA_DIR"
    install -d -m 0750 -o root -g "$SERVICE_USER" "$CONF_DIR"
}

# A 1 GiB swap file where RAM is under 2 GiB: a training run's peak, or pip building the venv,
# then slows down instead of meeting the OOM killer. Skipped inside a container, where swapon
# is not permitted, and where some swap is already on.
add_swap() {
    local mem_kib
    mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    ((mem_kib < 2 * 1024 * 1024)) || return 0
    [[ $(wc -l </proc/swaps) -le 1 ]] || return 0
    if systemd-detect-virt --container --quiet 2>/dev/null; then
        say "In a container: no swap file"
        return 0
    fi
    announce "Swap: 1 GiB at $SWAP_FILE (RAM is $((mem_kib / 1024)) MiB)" || return 0
    if [[ ! -f $SWAP_FILE ]]; then
        fallocate -l 1G "$SWAP_FILE" 2>/dev/null || dd if=/dev/zero of="$SWAP_FILE" bs=1M count=1024 status=none
        chmod 0600 "$SWAP_FILE"
        mkswap "$SWAP_FILE" >/dev/null
    fi
    if swapon "$SWAP_FILE" 2>/dev/null; then
        grep -q "^$SWAP_FILE " /etc/fstab || echo "$SWAP_FILE none swap sw 0 0" >>/etc/fstab
        # Swap is the safety net, not a place to page out RabbitMQ or the API early.
        echo 'vm.swappiness = 10' >/etc/sysctl.d/60-sweeplab-swap.conf
        sysctl -q -p /etc/sysctl.d/60-sweeplab-swap.conf 2>/dev/null || true
    else
        warn "swapon $SWAP_FILE was refused; going on without swap"
        rm -f "$SWAP_FILE"
    fi
}

new_secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# KEY [FILE]: the value of KEY in the env file, without surrounding quotes; empty when absent.
env_value() {
    local file=${2:-$ENV_FILE}
    [[ -r $file ]] || return 0
    sed -n "s/^$1=//p" "$file" | tail -n 1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/"
}

# Secrets: the flags', else the env file's, else new ones. It only reads and checks, so a dry
# run does it too, and both do it before anything is installed.
resolve_secrets() {
    local url
    if [[ $ROLE == worker ]]; then
        [[ -n $API_URL ]] || API_URL=$(env_value SWEEPLAB_API_URL)
        [[ -n $BROKER_URL ]] || BROKER_URL=$(env_value SWEEPLAB_BROKER_URL)
        [[ -n $WORKER_TOKEN ]] || WORKER_TOKEN=$(env_value SWEEPLAB_WORKER_TOKEN)
        if [[ -z $API_URL || -z $BROKER_URL || -z $WORKER_TOKEN || $BROKER_URL == *CHANGE-ME* ]]; then
            # A dry run as a user cannot read what an earlier run kept: say so, not "missing".
            [[ ! -e $ENV_FILE || -r $ENV_FILE ]] ||
                die "cannot read $ENV_FILE, where an earlier run kept --api-url, --broker-url and
    --worker-token: run it as root, or pass all three"
            die "--role worker needs --api-url, --broker-url and --worker-token (on the API's host,
    sudo /opt/sweeplab/scripts/provision.sh --print-worker-command prints them)"
        fi
    else
        API_TOKEN=$(env_value SWEEPLAB_API_TOKEN)
        [[ -n $API_TOKEN ]] || API_TOKEN=$(new_secret)
        [[ -n $WORKER_TOKEN ]] || WORKER_TOKEN=$(env_value SWEEPLAB_WORKER_TOKEN)
        [[ -n $WORKER_TOKEN ]] || WORKER_TOKEN=$(new_secret)
        if [[ -z $BROKER_PASSWORD ]]; then
            url=$(env_value SWEEPLAB_BROKER_URL)
            if [[ $url == "amqp://$BROKER_USER:"*"@127.0.0.1:5672/$BROKER_VHOST" ]]; then
                BROKER_PASSWORD=${url#"amqp://$BROKER_USER:"}
                BROKER_PASSWORD=${BROKER_PASSWORD%@*}
            fi
            [[ -n $BROKER_PASSWORD && $BROKER_PASSWORD != CHANGE-ME ]] || BROKER_PASSWORD=$(new_secret)
        fi
        BROKER_URL="amqp://$BROKER_USER:$BROKER_PASSWORD@127.0.0.1:5672/$BROKER_VHOST"
    fi
    # What the env file gave back is checked like the flags (it may have been edited by hand).
    validate_values
}

# KEY VALUE FILE: put KEY=VALUE in place of KEY's line, or at the end. Values come through the
# environment, so awk reads them verbatim.
set_line() {
    local tmp
    tmp=$(mktemp "$3.XXXXXX")
    KEY=$1 VALUE=$2 awk '
        index($0, ENVIRON["KEY"] "=") == 1 { if (!done) print ENVIRON["KEY"] "=" ENVIRON["VALUE"]; done = 1; next }
        { print }
        END { if (!done) print ENVIRON["KEY"] "=" ENVIRON["VALUE"] }' "$3" >"$tmp"
    cat "$tmp" >"$3"
    rm -f "$tmp"
}

drop_line() { sed -i "/^$1=/d" "$2"; }

# First time: the template. Later: the file as it is, with the lines provision.sh owns set.
write_env_file() {
    announce "Writing $ENV_FILE (0640 root:$SERVICE_USER)" || return 0
    local tmp
    tmp=$(mktemp "$CONF_DIR/.sweeplab.env.XXXXXX") # 0600 until it is whole
    if [[ -f $ENV_FILE ]]; then cat "$ENV_FILE" >"$tmp"; else cat "$SRC/systemd/sweeplab.env" >"$tmp"; fi
    set_line SWEEPLAB_DATA_DIR "$DATA_DIR" "$tmp"
    set_line SWEEPLAB_BROKER_URL "$BROKER_URL" "$tmp"
    set_line SWEEPLAB_WORKER_TOKEN "$WORKER_TOKEN" "$tmp"
    set_line SWEEPLAB_SANDBOX on "$tmp" # installed above: no script runs outside it
    if [[ $ROLE == worker ]]; then
        set_line SWEEPLAB_API_URL "$API_URL" "$tmp"
        drop_line SWEEPLAB_API_TOKEN "$tmp" # a training host never needs the users' token
    else
        drop_line SWEEPLAB_API_URL "$tmp"
        set_line SWEEPLAB_API_TOKEN "$API_TOKEN" "$tmp"
    fi
    chown "root:$SERVICE_USER" "$tmp"
    chmod 0640 "$tmp"
    mv -f "$tmp" "$ENV_FILE"
}

# ENV_FILE: RabbitMQ's consumer_timeout, from SWEEPLAB_MAX_RUN_TIMEOUT_S.
consumer_timeout_ms() {
    local max_s
    max_s=$(env_value SWEEPLAB_MAX_RUN_TIMEOUT_S "$1")
    max_s=${max_s%%.*}
    [[ $max_s =~ ^[0-9]+$ ]] || max_s=$DEFAULT_MAX_RUN_S
    echo $(((max_s + CONSUMER_MARGIN_S) * 1000))
}

# FILE BLOCK: put BLOCK's lines between the marks in FILE (the old block goes); true if FILE
# changed.
replace_block() {
    local file=$1 block=$2 tmp
    tmp=$(mktemp)
    if [[ -f $file ]]; then
        BEGIN=$BEGIN_MARK END=$END_MARK awk '
            $0 == ENVIRON["BEGIN"] { skip = 1 } !skip { print } $0 == ENVIRON["END"] { skip = 0 }' \
            "$file" >"$tmp"
    fi
    { echo "$BEGIN_MARK"; cat "$block"; echo "$END_MARK"; } >>"$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 1; fi
    if [[ -f $file ]]; then cat "$tmp" >"$file"; else install -m 0644 "$tmp" "$file"; fi
    rm -f "$tmp"
}

configure_rabbitmq() {
    local timeout_ms changed=0 conf env_conf
    timeout_ms=$(consumer_timeout_ms "$ENV_FILE")
    announce "RabbitMQ: user $BROKER_USER on vhost $BROKER_VHOST, no guest," \
        "consumer_timeout $timeout_ms ms, small-host tuning" || return 0
    conf=$(mktemp)
    env_conf=$(mktemp)
    sed "s/^consumer_timeout = .*/consumer_timeout = $timeout_ms/" \
        "$PREFIX/systemd/rabbitmq-sweeplab.conf" >"$conf"
    cat "$PREFIX/systemd/rabbitmq-env-sweeplab.conf" >"$env_conf"
    install -d -m 0755 /etc/rabbitmq
    if replace_block /etc/rabbitmq/rabbitmq.conf "$conf"; then changed=1; fi
    if replace_block /etc/rabbitmq/rabbitmq-env.conf "$env_conf"; then changed=1; fi
    rm -f "$conf" "$env_conf"
    systemctl enable --quiet rabbitmq-server.service
    if ((changed)); then systemctl restart rabbitmq-server.service; else systemctl start rabbitmq-server.service; fi
    wait_for_rabbitmq
    rabbitmq_user
}

wait_for_rabbitmq() {
    local i
    for ((i = 0; i < 60; i++)); do
        rabbitmqctl -q status >/dev/null 2>&1 && return 0
        sleep 2
    done
    die "RabbitMQ did not come up within 120 s: journalctl -u rabbitmq-server"
}

# The password is an argument of rabbitmqctl while it runs: `ps` shows it for that moment to
# whoever is logged in, which on a host of its own is root alone. (Lists are read whole before
# grep: `grep -q` on a pipe may close it early, and pipefail would take that for a failure.)
rabbitmq_user() {
    local users vhosts
    vhosts=$(rabbitmqctl -s list_vhosts name)
    grep -qxF "$BROKER_VHOST" <<<"$vhosts" || rabbitmqctl -q add_vhost "$BROKER_VHOST"
    users=$(rabbitmqctl -s list_users | awk '{print $1}')
    if ! grep -qxF "$BROKER_USER" <<<"$users"; then
        rabbitmqctl -q add_user "$BROKER_USER" "$BROKER_PASSWORD" >/dev/null
    elif ! rabbitmqctl -q authenticate_user "$BROKER_USER" "$BROKER_PASSWORD" >/dev/null 2>&1; then
        rabbitmqctl -q change_password "$BROKER_USER" "$BROKER_PASSWORD" >/dev/null
    fi
    rabbitmqctl -q set_permissions -p "$BROKER_VHOST" "$BROKER_USER" '.*' '.*' '.*'
    if grep -qxF guest <<<"$users"; then rabbitmqctl -q delete_user guest >/dev/null; fi
}

# DIR: the clone's tracked files (NUL-separated, relative to DIR), or, without git, every file
# but what .gitignore leaves out.
list_source_files() {
    local src=$1 name
    if [[ -e $src/.git ]] && command -v git >/dev/null &&
        git -c safe.directory="$src" -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
        git -c safe.directory="$src" -C "$src" ls-files -z --cached |
            while IFS= read -r -d '' name; do
                if [[ -e $src/$name || -L $src/$name ]]; then printf '%s\0' "$name"; fi
            done
    else
        (cd "$src" && find . \( -name .git -o -name .venv -o -name data -o -name sample_data \
            -o -name test-artifacts -o -name __pycache__ -o -name '.*_cache' -o -name .hypothesis \
            -o -name '*.pyc' \) -prune -o \( -type f -o -type l \) -printf '%P\0')
    fi
}

stop_units() {
    local unit
    for unit in "${UNITS[@]}"; do
        if systemctl is-active --quiet "$unit"; then systemctl stop "$unit"; fi
    done
}

# A new tree next to the old one, then swapped in with the units stopped; .venv moves across.
install_code() {
    announce "Code: $SRC -> $PREFIX" || return 0
    local staging=$PREFIX.new old=$PREFIX.old
    rm -rf "$staging" "$old"
    install -d -m 0755 "$staging"
    list_source_files "$SRC" | tar -C "$SRC" --null --no-recursion -T - -cf - |
        tar -C "$staging" --no-same-owner -xf -
    chmod -R u+rwX,go+rX,go-w "$staging"
    stop_units
    if [[ -d $VENV ]]; then mv "$VENV" "$staging/.venv"; fi
    if [[ -d $PREFIX ]]; then mv "$PREFIX" "$old"; fi
    mv "$staging" "$PREFIX"
    rm -rf "$old"
}

install_venv() {
    announce "Python environment $VENV from requirements.txt${WHEELHOUSE:+ (wheels from $WHEELHOUSE, no index)}" || return 0
    local stamp=$VENV/.requirements.sha256 wanted pip
    if ! "$VENV/bin/python" -c '' 2>/dev/null; then "$PYTHON" -m venv --clear "$VENV"; fi
    wanted=$({ "$VENV/bin/python" -VV; cat "$PREFIX/requirements.txt"; } | sha256sum | cut -d' ' -f1)
    if [[ ! -f $stamp || $(cat "$stamp") != "$wanted" ]]; then
        pip=("$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off)
        [[ -z $WHEELHOUSE ]] || pip+=(--no-index --find-links "$WHEELHOUSE")
        "${pip[@]}" -r "$PREFIX/requirements.txt"
        echo "$wanted" >"$stamp"
    fi
    # /opt is read-only to the units: compile once here, or every start compiles in memory.
    "$VENV/bin/python" -m compileall -q "$PREFIX/service" "$PREFIX/actors" "$PREFIX/migrations" \
        "$PREFIX/train.py" "$PREFIX/test.py" >/dev/null
}

# UNIT NAME SOURCE: install dropins/SOURCE as UNIT.d/NAME, or remove it when SOURCE is empty.
set_dropin() {
    local dir=$UNIT_DIR/$1.d
    if [[ -n $3 ]]; then
        install -d -m 0755 "$dir"
        install -m 0644 "$PREFIX/systemd/dropins/$3" "$dir/$2"
    else
        rm -f "$dir/$2"
        if [[ -d $dir ]]; then rmdir --ignore-fail-on-non-empty "$dir"; fi
    fi
}

install_units() {
    announce "systemd units for --role $ROLE" || return 0
    local unit public="" remote="" gpu=""
    for unit in "${UNITS[@]}" "$METADATA_BLOCK"; do
        install -m 0644 "$PREFIX/systemd/$unit" "$UNIT_DIR/$unit"
    done
    [[ $ROLE == worker || -n $DOMAIN ]] || public=sweeplab-api-public.conf
    [[ $ROLE != worker ]] || remote=sweeplab-worker-remote.conf
    [[ $ROLE == api || ! -e /dev/nvidiactl ]] || gpu=sweeplab-worker-gpu.conf
    set_dropin sweeplab-api.service public.conf "$public"
    set_dropin sweeplab-worker.service remote.conf "$remote"
    set_dropin sweeplab-worker.service gpu.conf "$gpu"
    systemctl daemon-reload
}

configure_caddy() {
    if [[ -z $DOMAIN ]]; then
        grep -qsF "$CADDY_MARK" "$CADDYFILE" || return 0
        announce "No --domain: Caddy stopped and disabled, its Caddyfile set aside" || return 0
        systemctl disable --now --quiet caddy.service || true
        mv -f "$CADDYFILE" "$CADDYFILE.sweeplab-off"
        if [[ -f $CADDYFILE.before-sweeplab ]]; then mv -f "$CADDYFILE.before-sweeplab" "$CADDYFILE"; fi
        return 0
    fi
    announce "Caddy: https://$DOMAIN -> 127.0.0.1:$API_PORT" || return 0
    if [[ -f $CADDYFILE ]] && ! grep -qF "$CADDY_MARK" "$CADDYFILE"; then
        cp -p "$CADDYFILE" "$CADDYFILE.before-sweeplab"
    fi
    install -d -m 0755 "$(dirname "$CADDYFILE")"
    sed "s/@DOMAIN@/$DOMAIN/g" "$PREFIX/systemd/Caddyfile" >"$CADDYFILE"
    chmod 0644 "$CADDYFILE"
    systemctl enable --quiet caddy.service
    systemctl reload-or-restart caddy.service
}

role_units() {
    case $ROLE in
        all) echo sweeplab-api.service sweeplab-worker.service ;;
        api) echo sweeplab-api.service sweeplab-aggregate.service ;;
        worker) echo sweeplab-worker.service ;;
    esac
}

# The API first, until it answers (it migrates the database), then the workers.
start_units() {
    local wanted unit
    read -ra wanted < <(role_units)
    announce "Starting ${wanted[*]}" || return 0
    systemctl enable --quiet "$METADATA_BLOCK"
    systemctl restart "$METADATA_BLOCK"
    for unit in "${UNITS[@]}"; do
        if [[ " ${wanted[*]} " == *" $unit "* ]]; then
            systemctl enable --quiet "$unit"
        elif systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit"; then
            systemctl disable --now --quiet "$unit"
        fi
    done
    if [[ $ROLE != worker ]]; then
        systemctl restart sweeplab-api.service
        wait_until_healthy
    fi
    for unit in "${wanted[@]}"; do
        if [[ $unit != sweeplab-api.service ]]; then systemctl restart "$unit"; fi
    done
}

wait_until_healthy() {
    local i
    for ((i = 0; i < 90; i++)); do
        curl -fsS --max-time 5 "http://127.0.0.1:$API_PORT/healthz" >/dev/null 2>&1 && return 0
        sleep 2
    done
    journalctl -u sweeplab-api.service -n 40 --no-pager >&2 || true
    die "the API did not answer /healthz within 180 s (its journal is above)"
}

check_worker() {
    ((!DRY_RUN)) || return 0
    sleep 5
    if ! systemctl is-active --quiet sweeplab-worker.service; then
        journalctl -u sweeplab-worker.service -n 40 --no-pager >&2 || true
        die "sweeplab-worker.service is not running (its journal is above)"
    fi
    curl -fsS --max-time 10 "$API_URL/healthz" >/dev/null 2>&1 ||
        warn "$API_URL/healthz does not answer from here; the worker refuses to start until it does (systemd tries again every 5 s): check the URL and the firewall"
}

# The API's address as workers would use it: the domain, else this host's first address.
api_host() {
    local address
    if [[ -n $DOMAIN ]]; then echo "$DOMAIN"; return 0; fi
    if grep -qsF "$CADDY_MARK" "$CADDYFILE"; then
        address=$(awk '/^[A-Za-z0-9.-]+ [{]$/ { print $1; exit }' "$CADDYFILE")
        if [[ -n $address ]]; then echo "$address"; return 0; fi
    fi
    address=$(hostname -I 2>/dev/null | awk '{print $1}') || true
    echo "${address:-$(hostname)}"
}

# TOKEN PASSWORD: the --role worker command line for a training host.
worker_command() {
    local host api_url
    host=$(api_host)
    if [[ -n $DOMAIN ]] || grep -qsF "$CADDY_MARK" "$CADDYFILE"; then
        api_url="https://$host"
    else
        api_url="http://$host:$API_PORT"
    fi
    printf 'sudo scripts/provision.sh --role worker --api-url %s --broker-url %s --worker-token %s\n' \
        "$api_url" "amqp://$BROKER_USER:$2@$host:5672/$BROKER_VHOST" "$1"
}

print_worker_command() {
    [[ -r $ENV_FILE ]] || die "cannot read $ENV_FILE: run it as root on the API's host"
    local url password token
    url=$(env_value SWEEPLAB_BROKER_URL)
    token=$(env_value SWEEPLAB_WORKER_TOKEN)
    [[ $url == "amqp://$BROKER_USER:"*@127.0.0.1:* && -n $token ]] ||
        die "$ENV_FILE is not an API host's (provision.sh --role all or api writes one)"
    password=${url#"amqp://$BROKER_USER:"}
    worker_command "$token" "${password%@*}"
}

print_summary() {
    ((!DRY_RUN)) || return 0
    echo
    if [[ $ROLE == worker ]]; then
        echo "sweeplab worker is running: sweeplab-worker.service, queue sweeplab_train, API $API_URL."
        echo "It shows on the API's /workers page. Upgrade: run the same command again."
        return 0
    fi
    local url
    if [[ -n $DOMAIN ]]; then url="https://$DOMAIN/"; else url="http://$(api_host):$API_PORT/"; fi
    echo "sweeplab is running (--role $ROLE): $url"
    echo "  API token:    SWEEPLAB_API_TOKEN in $ENV_FILE"
    echo "                (sudo sed -n 's/^SWEEPLAB_API_TOKEN=//p' $ENV_FILE)"
    if [[ -z $DOMAIN ]]; then
        echo "  Plain HTTP: the token crosses the network in clear text. From your machine, tunnel"
        echo "  instead: ssh -L 8080:127.0.0.1:8080 admin@$(api_host), then http://127.0.0.1:8080/"
    fi
    echo "  Training hosts: from a clone on each, with the worker token (SWEEPLAB_WORKER_TOKEN) and"
    echo "  the broker password (in SWEEPLAB_BROKER_URL) from $ENV_FILE:"
    echo "    $(worker_command '<worker token>' '<broker password>')"
    echo "  The same line with the secrets filled in: sudo $PREFIX/scripts/provision.sh --print-worker-command"
    echo "  Upgrade: run this command again (data, tokens and passwords are kept)."
}

main() {
    parse_args "$@"
    validate_args
    read_os
    if ((PRINT_PACKAGES)); then os_packages; return 0; fi
    if ((PRINT_WORKER_COMMAND)); then print_worker_command; return 0; fi
    if ((!DRY_RUN)); then
        ((EUID == 0)) || die "run it as root: sudo $0 $*"
        if [[ ! -d /run/systemd/system ]]; then
            die "systemd is not running here: provision.sh installs and starts systemd units"
        fi
        exec 9>/run/sweeplab-provision.lock
        flock -n 9 || die "another provision.sh is running"
    fi
    resolve_secrets
    [[ $SRC != "$PREFIX" ]] || die "run it from a clone of the repository, not from $PREFIX"
    case "$OS_ID $OS_VERSION" in
        "debian 12" | "ubuntu 22.04" | "ubuntu 24.04") ;;
        *) warn "made for Debian 12 and Ubuntu 22.04/24.04, not '$OS_ID $OS_VERSION': going on" ;;
    esac
    command -v apt-get >/dev/null || die "apt-get is needed (Debian or Ubuntu)"
    install_packages
    pick_python
    setup_user_and_dirs
    add_swap
    if ((DRY_RUN)); then say "(dry run: secrets are read from $ENV_FILE or generated)"; fi
    write_env_file
    install_code
    install_venv
    [[ $ROLE == worker ]] || configure_rabbitmq
    install_units
    [[ $ROLE == worker ]] || configure_caddy
    start_units
    [[ $ROLE != worker ]] || check_worker
    print_summary
}

# Sourced (tests/test_provision.py tries its functions on files of its own): define, do nothing.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
