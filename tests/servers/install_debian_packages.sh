#!/bin/bash
# Installs the Debian packages whose servers the tests run (slapd, ldap-utils, openssh-server...)
# without leaving the packages' own system daemons running.
#
# The tests start private slapd and sshd processes on free loopback ports with configurations of
# their own (tests/servers/slapd.py, tests/servers/sshd.py); a system slapd on 389 or sshd on 22
# would only hold ports and, for sshd, open the machine to logins. So while apt runs, a
# policy-rc.d that answers 101 ("action forbidden") keeps the maintainer scripts from starting
# them (Debian's documented switch, which invoke-rc.d and deb-systemd-invoke both obey); a
# machine that already has one keeps its own. Afterwards every service of a package that this run
# newly installed is stopped and, under systemd, disabled, in case an init ignored the switch.
# Packages that were already installed are not touched.
#
# Usage: install_debian_packages.sh PACKAGE...   (as root; `make test-servers` calls it)
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "install_debian_packages.sh: run as root (make uses sudo when you are not)" >&2
    exit 1
fi

declare -A SERVICES=([slapd]="slapd" [openssh-server]="ssh.socket ssh")
GUARD=/usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive
# Two test workers, or a person and a test run, may install at once: wait for dpkg's lock.
APT=(apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends)

new=()
for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || new+=("$package")
done
[ ${#new[@]} -eq 0 ] && exit 0

added_guard=
if [ ! -e "$GUARD" ]; then
    printf '#!/bin/sh\n# Added by Switchboard'"'"'s tests/servers/install_debian_packages.sh while it runs.\nexit 101\n' >"$GUARD"
    chmod 755 "$GUARD"
    added_guard=1
fi
remove_guard() { if [ -n "$added_guard" ]; then rm -f "$GUARD"; fi; }
trap remove_guard EXIT

"${APT[@]}" "${new[@]}" || { apt-get -o DPkg::Lock::Timeout=300 update && "${APT[@]}" "${new[@]}"; }
remove_guard
added_guard=

for package in "${new[@]}"; do
    for service in ${SERVICES[$package]:-}; do
        if [ -d /run/systemd/system ]; then
            systemctl disable --now "$service" >/dev/null 2>&1 || true
        elif [ -x "/etc/init.d/${service%.socket}" ] && [ "$service" = "${service%.socket}" ]; then
            "/etc/init.d/$service" stop >/dev/null 2>&1 || true
        fi
    done
done
# The tests' own servers write no pid files here, so a live pid in one of these is a system daemon.
for pidfile in /run/slapd/slapd.pid /run/sshd.pid; do
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "install_debian_packages.sh: a system daemon ($pidfile) is running; the tests do not need it" >&2
    fi
done
exit 0
