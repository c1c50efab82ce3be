#!/bin/sh
# A scripted agent: what an LLM agent does with mara, without the LLM.
#
# The orchestrator starts it in the instance's own worktree with MARA_RUN,
# MARA_INSTANCE, MARA_ROLE, MARA_WORKTREE and MARA_RUN_DIR (the run's folder)
# set, so plain `mara claim` needs no flags. What it does depends on MARA_ROLE:
#   architect, implementer: take ready tasks until none is open: claim, post a
#     decision, write a file, commit on the own branch, done with the artifact
#     (<role>_<n>.md);
#   reviewer: post a review of every done task, commit <role>_<n>.md;
#   integrator: collect the artifacts, merge every instance branch with
#     `mara integrate`, bring the result onto its own branch with integrator.md.
set -u
me=$(printf '%s' "$MARA_INSTANCE" | tr '#' '_')

work() {
  if [ "$MARA_ROLE" = architect ]; then
    mara post decision "$MARA_INSTANCE: design first (T1), then API and UI in parallel" >/dev/null || exit 1
  fi
  while :; do
    out=$(mara claim --next --json)
    rc=$?
    # 4: nothing left for this role: the agent's part of the run is over.
    [ "$rc" -eq 4 ] && break
    if [ "$rc" -eq 3 ]; then
      # Nothing ready. Tasks may open up when others finish their deps;
      # stop once no task is open any more.
      if mara board --json | grep -q '"status":"open"'; then
        sleep 0.05
        continue
      fi
      break
    fi
    [ "$rc" -eq 0 ] || exit "$rc"
    task=$(printf '%s' "$out" | sed -n 's/.*"payload":{"task":"\([^"]*\)".*/\1/p')
    [ -n "$task" ] || { echo "could not read the claimed task from: $out" >&2; exit 1; }
    mara post decision "$MARA_INSTANCE takes $task" >/dev/null || exit 1
    mkdir -p work
    printf '%s was done by %s\n' "$task" "$MARA_INSTANCE" > "work/$task.txt"
    printf -- '- %s: work/%s.txt\n' "$task" "$task" >> "$me.md"
    git add "work/$task.txt" "$me.md" && git commit -q -m "$task: work by $MARA_INSTANCE" || exit 1
    mara done "$task" --artifact "$me.md" >/dev/null || exit 1
  done
}

review() {
  done_tasks=$(mara board --json | tr '{' '\n' | sed -n 's/.*"id":"\([^"]*\)".*"status":"done".*/\1/p')
  printf '# Review by %s\n\n' "$MARA_INSTANCE" > "$me.md"
  for t in $done_tasks; do
    mara post review "$t: looks good" >/dev/null || exit 1
    printf -- '- %s: looks good\n' "$t" >> "$me.md"
  done
  git add "$me.md" && git commit -q -m "review by $MARA_INSTANCE" || exit 1
}

integrate() {
  mara collect >/dev/null || exit 1
  mara integrate >/dev/null
  rc=$?
  case "$rc" in
    0) verdict="merged every branch" ;;
    3) verdict="left conflicts for people (see integrator.md)" ;;
    *) exit "$rc" ;;
  esac
  git merge -q --ff-only "mara/$MARA_RUN/integration" || exit 1
  cp "$MARA_RUN_DIR/integrator.md" integrator.md
  git add integrator.md && git commit -q -m "integration report of run $MARA_RUN" || exit 1
  mara post decision "$MARA_INSTANCE $verdict into mara/$MARA_RUN/integration" >/dev/null
}

mara post note "$MARA_INSTANCE is starting in $(basename "$PWD")" >/dev/null || exit 1
case "$MARA_ROLE" in
  reviewer) review ;;
  integrator) integrate ;;
  *) work ;;
esac
mara post note "$MARA_INSTANCE is done" >/dev/null
