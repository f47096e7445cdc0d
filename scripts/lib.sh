# Shared by scripts/run, scripts/test and the bench scripts: say what we do, install what is
# missing (Debian/Ubuntu), provide a PostgreSQL for the tests. Sourced, not run.

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) to run: $*"; fi
}

APT_UPDATED=0
# Installs the Debian packages among "$@" that are not installed yet.
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get to install them"
  say "installing Debian packages: ${missing[*]}"
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Sets EDGE to the edge binary the benchmarks measure: "$1" when given, else a fresh release
# build of the edge.
release_edge() {
  if [ -n "${1:-}" ]; then
    EDGE=$1
  else
    say "building the release edge"
    cargo build --release --locked -p edge --bin edge
    EDGE=target/release/edge
  fi
}

ensure_rust() {
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust from https://rustup.rs first"
  local need=1.94 have
  have=$(rustc --version | awk '{print $2}')
  if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    die "Rust $have is too old; Outpost needs $need or newer (rustup update)"
  fi
}

# What building and running Outpost needs: a C toolchain (SQLite, ring), cmake (Pingora's
# dependencies), memcached (the edge's shared tier), curl (health checks in these scripts).
ensure_build_packages() {
  apt_install build-essential pkg-config cmake curl ca-certificates memcached
  # systemd-analyze, for the test that verifies deploy/systemd/.
  command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
  # logrotate, for the test that rotates an edge's access log with deploy/logrotate/.
  command -v logrotate >/dev/null 2>&1 || apt_install logrotate
  # promtool (Debian's prometheus package), for the test that checks and unit-tests
  # deploy/prometheus/'s alert rules.
  command -v promtool >/dev/null 2>&1 || apt_install prometheus
}

# The openssl command line, for scripts/dev-certs.
ensure_openssl() {
  command -v openssl >/dev/null 2>&1 || apt_install openssl
}

# Exports OUTPOST_TEST_POSTGRES_URL pointing at a PostgreSQL the tests may create schemas in:
# the one given, or a local server with the `test` database and trust auth (CI machines), or
# a local server we install or start, with a password role of our own (never changing its auth).
ensure_postgres() {
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
  if [ -n "${OUTPOST_TEST_POSTGRES_URL:-}" ]; then
    psql "$OUTPOST_TEST_POSTGRES_URL" -qAtc 'select 1' >/dev/null \
      || die "cannot connect to OUTPOST_TEST_POSTGRES_URL=$OUTPOST_TEST_POSTGRES_URL"
    say "PostgreSQL: using OUTPOST_TEST_POSTGRES_URL"
    return
  fi
  local trust_url=postgres://postgres@127.0.0.1:5432/test
  if psql "$trust_url" -qAtc 'select 1' >/dev/null 2>&1; then
    say "PostgreSQL: using $trust_url"
    export OUTPOST_TEST_POSTGRES_URL=$trust_url
    return
  fi
  if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    apt_install postgresql
  fi
  local port
  port=$(pg_lsclusters -h | awk '$4 == "online" {print $3; exit}')
  if [ -z "$port" ]; then
    local version cluster
    read -r version cluster port _ < <(pg_lsclusters -h | head -n1)
    say "PostgreSQL: starting cluster $version/$cluster on port $port"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start 2>/dev/null \
      || as_root pg_ctlcluster "$version" "$cluster" start
  fi
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 0.2; done
  pg_isready -q -h 127.0.0.1 -p "$port" || die "PostgreSQL did not start on port $port"
  say "PostgreSQL: creating role and database outpost_test"
  as_root runuser -u postgres -- psql -p "$port" -qAt >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'outpost_test') THEN
    CREATE ROLE outpost_test LOGIN PASSWORD 'outpost_test';
  END IF;
END $$;
SELECT 'CREATE DATABASE outpost_test OWNER outpost_test'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'outpost_test') \gexec
SQL
  export OUTPOST_TEST_POSTGRES_URL="postgres://outpost_test:outpost_test@127.0.0.1:$port/outpost_test"
  psql "$OUTPOST_TEST_POSTGRES_URL" -qAtc 'select 1' >/dev/null \
    || die "cannot connect to $OUTPOST_TEST_POSTGRES_URL"
  say "PostgreSQL: using $OUTPOST_TEST_POSTGRES_URL"
}
