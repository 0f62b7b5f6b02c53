"""tools/misc/run_step.sh, the demo scripts' step runner: a finished step is skipped, an
interrupted one resumed, each attempt's wall time recorded."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# a fake training command: records its arguments, writes the checkpoint it is told to
# (ITERS), or stops after writing last_checkpoint when FAIL is set
FAKE = r'''
fake() {
  local dir=${@: -1}
  if [ "$dir" = "--resume" ]; then dir=${@: -2:1}; fi
  mkdir -p "$dir"
  echo "$*" >> "$dir/calls"
  echo "$dir/iter_50.pth" > "$dir/last_checkpoint"
  [ -n "${FAIL:-}" ] && return 1
  touch "$dir/iter_$ITERS.pth"
}
'''


def run(tmp_path, fail=False):
    script = (f'set -e\nTAG="[t]"\nsource {ROOT}/tools/misc/run_step.sh\n{FAKE}\n'
              f'ITERS=100\nrun_step "step" "{tmp_path}/run" 100 fake a b\n')
    env = dict(os.environ, FAIL='1' if fail else '')
    return subprocess.run(['bash', '-c', script], env=env, capture_output=True, text=True)


def test_run_step_starts_resumes_and_skips(tmp_path):
    first = run(tmp_path, fail=True)
    assert first.returncode != 0 and '[t] step: 100 iterations' in first.stdout
    second = run(tmp_path)
    assert second.returncode == 0 and 'resuming from' in second.stdout
    calls = (tmp_path / 'run' / 'calls').read_text().splitlines()
    assert calls == [f'a b --work-dir {tmp_path}/run', f'a b --work-dir {tmp_path}/run --resume']
    # the failed attempt stopped before recording; the finished one recorded its seconds
    assert len((tmp_path / 'run' / 'wall_seconds').read_text().split()) == 1
    third = run(tmp_path)
    assert third.returncode == 0 and 'finished earlier' in third.stdout
    assert len((tmp_path / 'run' / 'calls').read_text().splitlines()) == 2
