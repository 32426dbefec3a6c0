# Sourced by the service scripts (not run on its own).

# running_pid PID_FILE PATTERN: the pid PID_FILE names, if that process runs and its command line holds PATTERN;
# fails otherwise (no pid file, a stale one, or its pid reused by another process since).
running_pid() {
  local pid
  [[ -f "$1" ]] || return 1
  pid=$(<"$1")
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
  echo "$pid"
}
