#!/bin/sh
# A scripted agent: what an LLM agent does with mara, without the LLM.
#
# It runs inside its own worktree with MARA_RUN and MARA_INSTANCE set, so plain
# `mara claim` needs no flags. It takes ready tasks until none is left: claims one,
# posts a decision, writes a file for it, commits on its own branch, and completes
# the task with its artifact (<role>_<n>.md).
set -u
me=$(printf '%s' "$MARA_INSTANCE" | tr '#' '_')
mara post note "$MARA_INSTANCE is starting in $(basename "$PWD")" >/dev/null || exit 1
while :; do
  out=$(mara claim --next --json)
  rc=$?
  if [ "$rc" -eq 3 ]; then
    # Nothing ready. Tasks may still open up when others finish their deps;
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
mara post note "$MARA_INSTANCE has nothing left to do" >/dev/null
