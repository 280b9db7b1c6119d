# Shared set-up of the load scripts, sourced by benches/*/run.sh: a scratch folder ($WORK) and
# a list of started processes ($PIDS), both removed when the script ends or is interrupted.
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
