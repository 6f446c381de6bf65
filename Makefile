# numad-py: one command per job on a fresh Debian 12 machine (root).
#   make run        the daemon in the foreground on etc/numad-py/
#   make test       gates (ruff, mypy, import contracts), host tests, then tests/numa inside VMs
#   make lint       the gates only
#   make test-host  host tests only (tests/, without tests/numa)
#   make test-vm    VM suite only; VM_ARGS="--topology two -k thp" to iterate
# Everything a fresh machine lacks (libnuma-dev, qemu, numactl, virtme-ng, a
# kernel) is installed by tests/vm/setup.sh and the venv step.

SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
VM_ARGS ?=

.PHONY: venv sysdeps lint test test-host test-vm test-reliability run bench install

sysdeps:
	@bash tests/vm/setup.sh --packages

# Rebuilt when the build inputs change (the cffi module is compiled in place).
$(STAMP): setup.py pyproject.toml $(wildcard cext/*.c cext/*.h cext/*.py cext/preload/*.c cext/preload/*.h)
	@bash tests/vm/setup.sh --packages
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test,lint]' --config-settings editable_mode=compat
	@touch $@

venv: $(STAMP)

# Claims stay true: lint, types and the import contracts (decide/ is pure, imports flow down).
lint: venv
	$(VENV)/bin/ruff check numad_py tests bench cext
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Gates, host tests and the VM suite all run; any failing fails the target.
test: venv
	@rc=0; \
	$(MAKE) --no-print-directory lint || rc=1; \
	$(MAKE) --no-print-directory test-host || rc=1; \
	$(MAKE) --no-print-directory test-vm || rc=1; \
	exit $$rc

# pytest exit 5 ("no tests collected") is neither a pass nor a failure of
# the host step: it is reported, and the VM suite's own counts decide.
test-host: venv
	@set +e; $(VPY) -m pytest tests --ignore=tests/numa -p no:cacheprovider -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "host: no host tests collected (pytest exit 5)"; rc=0; fi; \
	exit $$rc

# The adversarial suite alone: fuzzing, faults, limits (host), then its kernel part in the VM.
test-reliability: venv
	$(VPY) -m pytest tests/reliability -p no:cacheprovider -q
	@bash tests/vm/setup.sh
	$(VPY) tests/vm/run.py --topology two -- tests/numa -k reliability

test-vm: venv
	@bash tests/vm/setup.sh
	$(VPY) tests/vm/run.py $(VM_ARGS)

# The daemon in the foreground on the shipped policy (Ctrl-C stops it).  As root, numad-py is
# linked into /usr/local/bin and etc/numad-py/ copied to /etc/numad-py/ where files are missing,
# so `numad-py status`, `plan` and `check-config` find the same daemon and policy.
run: venv
	@bash scripts/dev-setup.sh
	@if [ "$$(id -u)" = 0 ]; then exec $(VENV)/bin/numad-py run; \
	else exec $(VENV)/bin/numad-py run --config etc/numad-py/numad-py.toml; fi

# Ratio benchmarks on the 2-node VM: prints one table, writes bench/results.json.
bench: venv
	@bash tests/vm/setup.sh
	$(VPY) bench/run.py $(BENCH_ARGS)

# Package into /opt/numad-py, unit into /etc/systemd/system, defaults into /etc/numad-py.
install:
	bash scripts/install.sh $(if $(filter 1,$(NUMAD_COMPAT)),--numad-compat)
