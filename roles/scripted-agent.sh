#!/bin/sh
# A scripted agent: what an LLM agent does with mara, without the LLM.
#
# The orchestrator starts it in the instance's own worktree with MARA_RUN,
# MARA_INSTANCE, MARA_ROLE, MARA_WORKTREE and MARA_RUN_DIR (the run's folder)
# set, so plain `mara claim` needs no flags. What it does depends on MARA_ROLE:
#   architect, implementer: wait for work (`claim --next --wait`, which also
#     merges the dependencies' work), read the task (`show`), write a file,
#     commit on the own branch, `done` with the artifact (<role>_<n>.md) and a
#     note; rework a task a reviewer sent back; answer questions addressed to
#     them (`inbox`); stop on exit 4 (nothing left). The architect asks
#     implementer#1 one question first.
#   reviewer: wait for done tasks to review; send the first one back with a
#     note, approve the rest; stop on exit 4.
#   implementer: at the end, change the line of src/main.txt (when there is one,
#     as in the demo's project) that the other one changes too: a conflict.
#   integrator: collect the artifacts, merge every instance branch with
#     `mara integrate`; on conflicts claim each resolve task, keep both sides on
#     its conflicts branch, commit, `done` it, `mara integrate --continue`; bring
#     the result onto its own branch with integrator.md.
set -u
me=$(printf '%s' "$MARA_INSTANCE" | tr '#' '_')

# The seq of every question in my inbox (to me, my role or everyone), answered.
answer_questions() {
  mara inbox --json | grep '"type":"question"' | sed -n 's/^{"seq":\([0-9]*\),.*/\1/p' |
    while read -r seq; do
      mara post answer "$MARA_INSTANCE: yes, I take the UI screens" --reply-to "$seq" >/dev/null || exit 1
    done
}

# Claims the next task (waiting for one); prints its id, or returns 4 (stop).
next_task() {
  while :; do
    out=$(mara claim --next --wait 30 $1 --json)
    rc=$?
    [ "$rc" -eq 4 ] && return 4
    [ "$rc" -eq 3 ] && continue
    [ "$rc" -eq 0 ] || exit "$rc"
    task=$(printf '%s' "$out" | sed -n 's/.*"payload":{"task":"\([^"]*\)".*/\1/p')
    [ -n "$task" ] || { echo "could not read the claimed task from: $out" >&2; exit 1; }
    printf '%s' "$task"
    return 0
  done
}

work() {
  if [ "$MARA_ROLE" = architect ]; then
    mara post decision "$MARA_INSTANCE: design first (T1), then API and UI in parallel" >/dev/null || exit 1
    mara post question "implementer#1, will you take the UI screens?" --to implementer#1 >/dev/null || exit 1
  fi
  while :; do
    task=$(next_task --merge-deps)
    rc=$?
    [ "$rc" -eq 4 ] && break
    [ "$rc" -eq 0 ] || exit "$rc"
    answer_questions
    back=$(mara show "$task" --json | sed -n 's/.*"sent_back":\([0-9]*\).*/\1/p')
    mara post decision "$MARA_INSTANCE takes $task" --task "$task" >/dev/null || exit 1
    mkdir -p work
    if [ "${back:-0}" -gt 0 ]; then
      printf '%s was reworked by %s after review: tested by hand\n' "$task" "$MARA_INSTANCE" >> "work/$task.txt"
      note="reworked: says how it was tested"
    else
      printf '%s was done by %s\n' "$task" "$MARA_INSTANCE" > "work/$task.txt"
      note="wrote work/$task.txt"
    fi
    printf -- '- %s: work/%s.txt\n' "$task" "$task" >> "$me.md"
    git add "work/$task.txt" "$me.md" && git commit -q -m "$task: work by $MARA_INSTANCE" || exit 1
    mara done "$task" --artifact "$me.md" --note "$note" >/dev/null || exit 1
  done
  answer_questions
  if [ "$MARA_ROLE" = implementer ] && [ -f src/main.txt ]; then
    # The demo's project: both implementers change the same line, so the
    # integrator gets one conflict to resolve.
    printf 'entry point: wired up by %s\n' "$MARA_INSTANCE" > src/main.txt
    git add src/main.txt && git commit -q -m "wire the entry point ($MARA_INSTANCE)" || exit 1
  fi
}

review() {
  printf '# Review by %s\n\n' "$MARA_INSTANCE" > "$me.md"
  sent_back=0
  while :; do
    task=$(next_task "")
    rc=$?
    [ "$rc" -eq 4 ] && break
    [ "$rc" -eq 0 ] || exit "$rc"
    if [ "$sent_back" -eq 0 ]; then
      mara review "$task" --changes "say how $task was tested" >/dev/null || exit 1
      printf -- '- %s: sent back (say how it was tested)\n' "$task" >> "$me.md"
      sent_back=1
    else
      mara review "$task" --approve --note "looks good" >/dev/null || exit 1
      printf -- '- %s: approved\n' "$task" >> "$me.md"
    fi
  done
  git add "$me.md" && git commit -q -m "review by $MARA_INSTANCE" || exit 1
}

# Keeps both sides of every diff3 conflict in file $1: drops the marker lines and
# the base's lines.
keep_both() {
  awk '/^<<<<<<< /{s=1; next} /^\|\|\|\|\|\|\| /{s=2; next}
       /^=======$/ && s{s=3; next} /^>>>>>>> /{s=0; next} s!=2' "$1" > "$1.resolved" &&
    mv "$1.resolved" "$1"
}

# Claims each resolve task the integration left, resolves it on its conflicts
# branch (both sides kept), commits there, and says it is done; prints how many.
resolve_conflicts() {
  n=0
  while out=$(mara claim --next --json); do
    task=$(printf '%s' "$out" | sed -n 's/.*"payload":{"task":"\([^"]*\)".*/\1/p')
    case "$task" in resolve-*) ;; *) echo "not a resolve task: $out" >&2; exit 1 ;; esac
    # The conflicts branch is the task's `resolves` field (the board checks it).
    branch=$(mara show "$task" --json | sed -n 's/.*"resolves":{"branch":"\([^"]*\)".*/\1/p')
    [ -n "$branch" ] || { echo "$task names no conflicts branch" >&2; exit 1; }
    git switch -q "$branch" || exit 1
    for f in $(git grep -l '^<<<<<<< '); do keep_both "$f" || exit 1; done
    git add -A && git commit -q -m "$task: keep both sides" || exit 1
    mara done "$task" --note "kept both sides on $branch" >/dev/null || exit 1
    git switch -q - || exit 1
    n=$((n + 1))
  done
  printf '%s' "$n"
}

integrate() {
  mara collect >/dev/null || exit 1
  mara integrate >/dev/null
  rc=$?
  case "$rc" in
    0) verdict="merged every branch" ;;
    3)
      n=$(resolve_conflicts) || exit 1
      # A resolve task is done without review: --continue checks the resolution
      # (no markers, both sides, no file changed but those in conflict).
      mara integrate --continue >/dev/null
      rc=$?
      case "$rc" in
        0) verdict="resolved $n conflict(s) and merged every branch" ;;
        3) verdict="left conflicts for people (see integrator.md)" ;;
        *) exit "$rc" ;;
      esac ;;
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
