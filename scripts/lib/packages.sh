# shellcheck shell=bash
# Sourced by scripts/services.sh and scripts/fleet.sh (after their log and die): running a
# command as root and installing Debian packages, as both need.

# as_root COMMAND...: runs it as root (directly, or through password-less sudo).
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		die "root is needed for: $* (run this script as root)"
	fi
}

# apt_install PACKAGE...: installs them, updating the package lists once if the first try fails.
apt_install() {
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
	log "installing Debian package(s): $* ..."
	if ! as_root "${apt[@]}" install --no-install-recommends "$@" </dev/null >&2; then
		log "apt-get install failed; running apt-get update and retrying"
		as_root "${apt[@]}" update </dev/null >&2 || die "apt-get update failed"
		as_root "${apt[@]}" install --no-install-recommends "$@" </dev/null >&2 ||
			die "apt-get install $* failed"
	fi
}
