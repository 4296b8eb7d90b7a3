#!/usr/bin/env bash
# Make sure the test database servers answer: PostgreSQL on 127.0.0.1:5432 (user postgres,
# password "postgres" or trust) and MariaDB on 127.0.0.1:3306 (root, empty password).
# Running servers are used as they are; stopped ones are started; missing ones are installed.
set -uo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { for _ in $(seq 1 30); do up "$1" && return 0; sleep 1; done; return 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! up 5432; then
  echo "PostgreSQL is not answering on 127.0.0.1:5432; starting it"
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_up 5432 || { echo "PostgreSQL did not start"; exit 1; }
  as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" || true
fi

if ! up 3306; then
  echo "MariaDB is not answering on 127.0.0.1:3306; starting it"
  command -v mariadbd >/dev/null || apt_install mariadb-server
  as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_up 3306 || { echo "MariaDB did not start"; exit 1; }
  as_root mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED BY ''; FLUSH PRIVILEGES;" || true
fi
if ! command -v dot >/dev/null; then
  echo "installing Graphviz (the diagram tests draw SVG and PNG)"
  apt_install graphviz || echo "Graphviz could not be installed; diagrams fall back to Mermaid"
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "installing SLURM and munge (tests/test_slurm.py starts a one-node cluster)"
  apt_install slurm-wlm munge || echo "SLURM could not be installed; tests/test_slurm.py will fail in CI"
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's Chromium (tests/test_dashboard.py drives it with Playwright)"
  apt_install chromium || echo "Chromium could not be installed; the dashboard's browser test will fail in CI"
fi
echo "database servers: PostgreSQL 127.0.0.1:5432 and MariaDB 127.0.0.1:3306 answer"
