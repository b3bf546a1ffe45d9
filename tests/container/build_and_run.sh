#!/usr/bin/env bash
# Builds the project's container image and checks it for real, with buildah and podman (no Docker
# engine and no registry needed):
#   1. a local Debian bookworm base image made with debootstrap (python3, python3-venv and
#      ca-certificates; cached as a tarball), standing in for python:3.11-slim;
#   2. the Dockerfile built against it with --build-arg BASE_IMAGE=...;
#   3. image metadata: non-root numeric USER, HEALTHCHECK, EXPOSE 9851, default CMD;
#   4. `--config.check` on mounted configs: a valid one exits 0, an invalid one exits 1 with the error;
#   5. the default CMD with a mounted config in a container with no network, a read-only root
#      filesystem and no capabilities: the HEALTHCHECK (`podman healthcheck run`) reports healthy,
#      and `podman stop` (SIGTERM to PID 1) ends it at once with exit code 0;
#   6. `qlik-sense-exporter demo` on the host network, listening on 127.0.0.1 only: /metrics read
#      from the host shows real values, the process runs as a non-root user, nothing it opened
#      listens beyond loopback, and the HEALTHCHECK reports healthy;
#   7. every layer of the image searched for private keys, JWTs and key/token files;
#   8. the image size.
# Everything it creates (containers, images, storage) lives in one temporary folder and is removed
# on exit; only the base tarball is kept, in the cache folder, to make re-runs faster.
#
# Usage: tests/container/build_and_run.sh      (as root; installs buildah podman debootstrap runc
#                                                with apt-get when missing)
# Environment: QSE_TEST_CACHE_DIR, the cache folder
#              (default ~/.cache/qlik-sense-exporter-test/container).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO_ROOT
readonly HERE="${REPO_ROOT}/tests/container"
readonly CACHE_DIR="${QSE_TEST_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/qlik-sense-exporter-test/container}"
readonly SUITE=bookworm
readonly BASE_PACKAGES=python3,python3-venv,ca-certificates
readonly RUN_ID="$$"
readonly BASE_IMAGE="localhost/qse-test-base:${SUITE}-${RUN_ID}"
readonly IMAGE="localhost/qlik-sense-exporter:test-${RUN_ID}"
readonly CT_DEMO="qse-test-demo-${RUN_ID}"
readonly CT_DEFAULT="qse-test-default-${RUN_ID}"
readonly CT_UNHEALTHY="qse-test-unhealthy-${RUN_ID}"
readonly EXPORTER_UID=10001
STARTED_AT=$(date +%s)
readonly STARTED_AT
WORK=""

log() { printf '\n==> %s\n' "$*"; }
pass() { printf '    ok: %s\n' "$*"; }
fail() {
	printf '\nFAIL: %s\n' "$*" >&2
	exit 1
}

# ---------------------------------------------------------------------------------------------
# Set-up and clean-up

cleanup() {
	local rc=$?
	set +e
	if [[ -n "${WORK}" && -d "${WORK}" ]]; then
		if [[ ${rc} -ne 0 ]]; then
			for ct in "${CT_DEMO}" "${CT_DEFAULT}" "${CT_UNHEALTHY}"; do
				if podman container exists "${ct}" 2>/dev/null; then
					echo "--- last log lines of ${ct}:" >&2
					podman logs --tail 40 "${ct}" >&2 2>&1
				fi
			done
		fi
		podman rm --force --all --time 0 >/dev/null 2>&1
		buildah rm --all >/dev/null 2>&1
		podman rmi --force --all >/dev/null 2>&1
		podman system reset --force >/dev/null 2>&1
		# Anything still mounted under the work folder (overlay layers, or debootstrap's /proc
		# and /sys when it was interrupted) is unmounted before the folder is deleted.
		findmnt --raw --noheadings --output TARGET | grep -F "${WORK}/" | sort -r |
			while read -r mountpoint; do umount --lazy "${mountpoint}"; done
		rm -rf --one-file-system "${WORK}"
	fi
	echo "(container test finished in $(($(date +%s) - STARTED_AT)) s, exit ${rc})"
	exit "${rc}"
}

install_tools() {
	local missing=()
	for tool in buildah podman debootstrap runc; do
		command -v "${tool}" >/dev/null || missing+=("${tool}")
	done
	[[ ${#missing[@]} -eq 0 ]] && return
	log "installing ${missing[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	timeout 300 apt-get update -qq
	timeout 600 apt-get install -y -qq buildah podman debootstrap runc >/dev/null
}

# Private storage, runtime state and configuration, so that nothing outside WORK is touched and
# the host's defaults (crun, vfs, /var/tmp) that fail or crawl here are not used.
configure_containers() {
	mkdir -p "${WORK}/storage" "${WORK}/tmp"
	cat >"${WORK}/containers.conf" <<-EOF
		[containers]
		default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
		[engine]
		runtime = "runc"
		cgroup_manager = "cgroupfs"
		events_logger = "file"
		events_logfile_path = "${WORK}/storage/events.log"
		tmp_dir = "${WORK}/storage/libpod-tmp"
		volume_path = "${WORK}/storage/volumes"
		[network]
		network_config_dir = "${WORK}/storage/networks"
	EOF
	cat >"${WORK}/storage.conf" <<-EOF
		[storage]
		driver = "overlay"
		graphroot = "${WORK}/storage/graph"
		runroot = "${WORK}/storage/run"
	EOF
	export CONTAINERS_CONF="${WORK}/containers.conf"
	export CONTAINERS_STORAGE_CONF="${WORK}/storage.conf"
	export TMPDIR="${WORK}/tmp"
}

# The first deb mirror apt already uses for the Debian archive (deb822 .sources or one-line .list).
apt_mirror() {
	local mirror
	mirror=$(
		cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
			awk '/^URIs:/ && $2 ~ /debian\/?$/ && $2 !~ /security/ { print $2; exit }'
	)
	if [[ -z "${mirror}" ]]; then
		mirror=$(
			cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
				awk '$1 == "deb" && $3 ~ /^'"${SUITE}"'$/ { print ($2 ~ /^\[/ ? $3 : $2); exit }'
		)
	fi
	echo "${mirror:-http://deb.debian.org/debian}"
}

host_apt_sources() {
	find /etc/apt -maxdepth 2 \( -name 'sources.list' -o -path '*/sources.list.d/*.list' \
		-o -path '*/sources.list.d/*.sources' \) -type f | sort
}

host_ca_files() {
	find /etc/ssl/certs/ca-certificates.crt /usr/local/share/ca-certificates \
		-name '*.crt' -type f 2>/dev/null | sort
}

# A debootstrap rootfs with the host's apt sources and CA bundle (HTTPS to the package registries
# is only trusted with it), kept as a tarball in CACHE_DIR under a name that changes with them.
base_tarball() {
	local mirror key tarball rootfs
	mirror=$(apt_mirror)
	key=$(
		{
			echo "${SUITE} ${BASE_PACKAGES} ${mirror} v2"
			host_apt_sources | xargs cat
			host_ca_files | xargs cat
		} | sha256sum | cut -c1-16
	)
	tarball="${CACHE_DIR}/rootfs-${SUITE}-${key}.tar"
	if [[ -s "${tarball}" ]]; then
		echo "    cached base rootfs: ${tarball}" >&2
		echo "${tarball}"
		return
	fi
	echo "    debootstrap --variant=minbase ${SUITE} from ${mirror} (about a minute)" >&2
	rootfs="${WORK}/rootfs"
	mkdir -p "${rootfs}" "${CACHE_DIR}"
	if ! timeout 900 debootstrap --variant=minbase --include="${BASE_PACKAGES}" \
		"${SUITE}" "${rootfs}" "${mirror}" >"${WORK}/debootstrap.log" 2>&1; then
		tail -20 "${WORK}/debootstrap.log" >&2
		fail "debootstrap failed (log above)"
	fi
	# The host's sources replace the one debootstrap wrote; keyrings they name come along.
	rm -f "${rootfs}/etc/apt/sources.list"
	host_apt_sources | while read -r src; do
		cp "${src}" "${rootfs}${src}"
		sed -n 's/^Signed-By: *//p; s/.*signed-by=\([^] ]*\).*/\1/p' "${src}" |
			while read -r keyring; do
				[[ -f "${keyring}" && ! -e "${rootfs}${keyring}" ]] || continue
				mkdir -p "$(dirname "${rootfs}${keyring}")"
				cp "${keyring}" "${rootfs}${keyring}"
			done
	done
	cp /etc/ssl/certs/ca-certificates.crt "${rootfs}/etc/ssl/certs/ca-certificates.crt"
	if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
		cp /usr/local/share/ca-certificates/*.crt "${rootfs}/usr/local/share/ca-certificates/"
	fi
	# pip inside a build uses this bundle too.
	printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"${rootfs}/etc/pip.conf"
	# Trimmed like the official slim images: no package lists, documentation or manuals.
	rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/* \
		"${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/* "${rootfs}"/usr/share/info/*
	tar -C "${rootfs}" --numeric-owner -cf "${tarball}.partial" .
	# Base tarballs made from other sources or CA bundles are stale now.
	find "${CACHE_DIR}" -maxdepth 1 -name "rootfs-${SUITE}-*.tar" -delete
	mv "${tarball}.partial" "${tarball}"
	rm -rf --one-file-system "${rootfs}"
	echo "${tarball}"
}

# ---------------------------------------------------------------------------------------------
# Helpers for the checks

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Prints the body of an http URL; fails (quietly) on any error or non-2xx status.
http_get() {
	python3 - "$1" <<-'EOF'
		import sys, urllib.request
		try:
		    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
		        sys.stdout.write(response.read().decode())
		except Exception:
		    sys.exit(1)
	EOF
}

# Runs the image once (no network, so no port is opened anywhere) and captures output and status.
run_once() {
	local out="$1"
	shift
	set +e
	timeout 120 podman run --rm --network none --no-healthcheck \
		-v "${WORK}/config:/etc/qlik-sense-exporter:ro" "$@" >"${out}" 2>&1
	local rc=$?
	set -e
	echo "${rc}"
}

dummy_api_key() {
	python3 -c 'import time, jwt; print(jwt.encode({"exp": int(time.time()) + 31536000, "sub": "config-check"}, "throw-away-signing-key-0123456789", algorithm="HS256"))'
}

write_configs() {
	mkdir -p "${WORK}/config/secrets"
	# A dummy key, JWT-shaped (--config.check reads its expiry) but signed with a throw-away
	# key; it is mounted at run time, never part of the image the secret scan reads.
	dummy_api_key >"${WORK}/config/secrets/cloud.key"
	cat >"${WORK}/config/config.yml" <<-'EOF'
		# The API key comes from a mounted file (relative to this file's folder).
		defaults:
		  interval: 60s
		targets:
		  - name: cloud-eu
		    type: cloud
		    host: tenant.invalid
		    auth:
		      method: apikey
		      api_key_file: secrets/cloud.key
	EOF
	cat >"${WORK}/config/config-env.yml" <<-'EOF'
		# The API key comes from the container's environment.
		targets:
		  - name: cloud-eu
		    type: cloud
		    host: tenant.invalid
		    auth:
		      method: apikey
		      api_key_env: QLIK_CLOUD_API_KEY
	EOF
	cat >"${WORK}/config/invalid.yml" <<-'EOF'
		targets:
		  - name: cloud-eu
		    type: cloud
		    host: tenant.invalid
		    not_a_setting: true
		    auth:
		      method: apikey
		      api_key_file: secrets/cloud.key
	EOF
	chmod -R a+rX "${WORK}/config"
}

# ---------------------------------------------------------------------------------------------
# The checks

check_metadata() {
	log "image metadata"
	local user healthcheck ports entrypoint cmd
	user=$(podman image inspect --format '{{.Config.User}}' "${IMAGE}")
	[[ "${user}" == "${EXPORTER_UID}:${EXPORTER_UID}" ]] ||
		fail "USER is '${user}', expected ${EXPORTER_UID}:${EXPORTER_UID}"
	pass "USER ${user}"
	healthcheck=$(podman image inspect --format '{{json .Config.Healthcheck}}' "${IMAGE}")
	[[ "${healthcheck}" == *"/-/healthy"* || "${healthcheck}" == *HEALTHCHECK_URL* ]] ||
		fail "no HEALTHCHECK on /-/healthy in the image config: ${healthcheck}"
	pass "HEALTHCHECK present"
	ports=$(podman image inspect --format '{{json .Config.ExposedPorts}}' "${IMAGE}")
	[[ "${ports}" == *'"9851/tcp"'* ]] || fail "9851/tcp not exposed: ${ports}"
	pass "EXPOSE 9851"
	entrypoint=$(podman image inspect --format '{{json .Config.Entrypoint}}' "${IMAGE}")
	cmd=$(podman image inspect --format '{{json .Config.Cmd}}' "${IMAGE}")
	[[ "${cmd}" == *'"--config.file","/etc/qlik-sense-exporter/config.yml"'* &&
		"${cmd}" == *'"--web.listen-address",":9851"'* ]] ||
		fail "unexpected default CMD: ${entrypoint} ${cmd}"
	pass "ENTRYPOINT ${entrypoint} CMD ${cmd}"
	local rc
	rc=$(run_once "${WORK}/help.out" "${IMAGE}" --help)
	[[ ${rc} -eq 0 ]] || fail "qlik-sense-exporter --help exited ${rc}: $(cat "${WORK}/help.out")"
	pass "qlik-sense-exporter --help runs in the image"
}

check_config_check() {
	log "--config.check on mounted configs"
	local rc
	rc=$(run_once "${WORK}/check-valid.out" "${IMAGE}" \
		--config.file /etc/qlik-sense-exporter/config.yml --config.check)
	[[ ${rc} -eq 0 ]] || fail "--config.check of a valid config exited ${rc}: $(cat "${WORK}/check-valid.out")"
	pass "valid config (API key from a mounted file): exit 0"

	rc=$(run_once "${WORK}/check-env.out" -e "QLIK_CLOUD_API_KEY=$(dummy_api_key)" "${IMAGE}" \
		--config.file /etc/qlik-sense-exporter/config-env.yml --config.check)
	[[ ${rc} -eq 0 ]] || fail "--config.check of a valid config exited ${rc}: $(cat "${WORK}/check-env.out")"
	pass "valid config (API key from the environment): exit 0"

	rc=$(run_once "${WORK}/check-invalid.out" "${IMAGE}" \
		--config.file /etc/qlik-sense-exporter/invalid.yml --config.check)
	[[ ${rc} -eq 1 ]] || fail "--config.check of an invalid config exited ${rc} (expected 1): $(cat "${WORK}/check-invalid.out")"
	grep -q 'not_a_setting' "${WORK}/check-invalid.out" ||
		fail "the error does not name the bad key: $(cat "${WORK}/check-invalid.out")"
	pass "invalid config: exit 1 with: $(grep -m1 'not_a_setting' "${WORK}/check-invalid.out")"
}

# Starts a detached container. Its stderr goes to a file: podman logs errors there about the
# systemd timers it would use to schedule health checks (there is no systemd here), which are
# harmless because `podman healthcheck run` runs the check on demand.
start_container() {
	local name="$1"
	shift
	if ! timeout 60 podman run -d --name "${name}" --health-interval disable "$@" \
		>/dev/null 2>"${WORK}/start-${name}.log"; then
		cat "${WORK}/start-${name}.log" >&2
		fail "podman run ${name} failed (above)"
	fi
}

# Waits until `podman healthcheck run` reports healthy (the start period lets the server start).
wait_healthy() {
	local ct="$1" deadline=$((SECONDS + 60)) out
	until out=$(podman healthcheck run "${ct}" 2>&1); do
		[[ "$(podman container inspect --format '{{.State.Running}}' "${ct}")" == true ]] ||
			fail "${ct} stopped before it became healthy"
		((SECONDS < deadline)) || fail "${ct} not healthy after 60 s: ${out}"
		sleep 2
	done
	pass "podman healthcheck run ${ct}: ${out:-healthy}"
	local status
	status=$(podman container inspect --format '{{.State.Health.Status}}' "${ct}")
	[[ "${status}" == healthy ]] || fail "${ct}'s health status is '${status}'"
	pass "podman inspect ${ct}: health status ${status}"
}

check_default_cmd() {
	log "default CMD with a mounted config, hardened as in Kubernetes (no network: nothing is reachable from outside)"
	start_container "${CT_DEFAULT}" --network none \
		--read-only --cap-drop ALL --security-opt no-new-privileges \
		-v "${WORK}/config:/etc/qlik-sense-exporter:ro" "${IMAGE}"
	wait_healthy "${CT_DEFAULT}"
	pass "runs with a read-only root filesystem, no capabilities and no-new-privileges"

	# The same, with the HEALTHCHECK pointed at a port nothing listens on: it must fail.
	start_container "${CT_UNHEALTHY}" --network none \
		-e HEALTHCHECK_URL=http://127.0.0.1:9/-/healthy \
		-v "${WORK}/config:/etc/qlik-sense-exporter:ro" "${IMAGE}"
	if podman healthcheck run "${CT_UNHEALTHY}" >/dev/null 2>&1; then
		fail "the HEALTHCHECK passes even with nothing listening at HEALTHCHECK_URL"
	fi
	pass "the HEALTHCHECK fails when nothing answers at HEALTHCHECK_URL"
	podman rm --force --time 0 "${CT_UNHEALTHY}" >/dev/null 2>&1

	# As PID 1 the exporter only stops on SIGTERM if it handles it (the kernel ignores default
	# dispositions for PID 1); otherwise `docker stop` waits 10 s and kills it.
	local stop_start=${SECONDS} exit_code
	timeout 30 podman stop --time 10 "${CT_DEFAULT}" >/dev/null 2>&1
	exit_code=$(podman container inspect --format '{{.State.ExitCode}}' "${CT_DEFAULT}")
	if ((SECONDS - stop_start >= 8)) || [[ "${exit_code}" != 0 ]]; then
		fail "podman stop took $((SECONDS - stop_start)) s, exit code ${exit_code}: SIGTERM not handled cleanly"
	fi
	pass "podman stop (SIGTERM): exited with 0 in $((SECONDS - stop_start)) s"
	podman rm --force --time 0 "${CT_DEFAULT}" >/dev/null 2>&1
}

check_demo() {
	log "demo on the host network, on 127.0.0.1 only"
	local port metrics deadline
	port=$(free_port)
	# HEALTHCHECK_URL points the image's HEALTHCHECK at the port the demo listens on.
	start_container "${CT_DEMO}" --network host \
		-e "HEALTHCHECK_URL=http://127.0.0.1:${port}/-/healthy" \
		"${IMAGE}" demo --web.listen-address "127.0.0.1:${port}"
	deadline=$((SECONDS + 120))
	until metrics=$(http_get "http://127.0.0.1:${port}/metrics") &&
		grep -Eq '^qlik_probe_success\{[^}]*\} 1(\.0)?$' <<<"${metrics}" &&
		grep -q '^qlik_repository_build_info{' <<<"${metrics}"; do
		[[ "$(podman container inspect --format '{{.State.Running}}' "${CT_DEMO}")" == true ]] ||
			fail "the demo container stopped"
		((SECONDS < deadline)) ||
			fail "no successful probe in /metrics after 120 s; last scrape: $(grep '^qlik_probe_success' <<<"${metrics:-}")"
		sleep 2
	done
	pass "from the host: $(grep -Em1 '^qlik_probe_success\{[^}]*\} 1' <<<"${metrics}")"
	pass "$(grep -Ec '^qlik_probe_success\{[^}]*\} 1' <<<"${metrics}") of $(grep -c '^qlik_probe_success{' <<<"${metrics}") demo checks succeed so far"
	pass "from the host: $(grep -m1 '^qlik_repository_build_info{' <<<"${metrics}")"
	grep -q '^qlik_node_info{' <<<"${metrics}" || fail "the demo site's nodes are not on /metrics"
	pass "the demo site: $(grep -c '^qlik_node_info{' <<<"${metrics}") nodes discovered"
	# The image installs the speed extra: the daemon runs on uvloop. (The log is read whole
	# first: grep -q ending the pipe early would fail it under pipefail.)
	local listening_line
	listening_line=$(podman logs "${CT_DEMO}" 2>&1 | grep 'msg=listening' | head -n 1 || true)
	[[ "${listening_line}" == *"loop=uvloop"* ]] ||
		fail "the demo does not run on uvloop: ${listening_line:-no listening line}"
	pass "${listening_line#*msg=}"

	local uid
	uid=$(podman exec "${CT_DEMO}" id -u)
	[[ "${uid}" != 0 ]] || fail "the exporter runs as root inside the container"
	pass "podman exec id -u: ${uid}"
	local users
	users=$(podman top "${CT_DEMO}" huser user | tail -n +2 | sort -u | tr -s ' \n' ' ')
	! grep -Eq '(^| )(0|root)( |$)' <<<"${users}" || fail "a container process runs as root: ${users}"
	pass "podman top: host user / container user of every process: ${users}"

	# With --network host every socket the container opens is on the host: all must be loopback.
	local pids listening
	pids=$(podman top "${CT_DEMO}" hpid | tail -n +2 | tr -s ' \n' '|' | sed 's/^|//; s/|$//')
	listening=$(ss -Hltnp | grep -E "pid=(${pids}),") || fail "no listening socket found for the demo"
	echo "${listening}" | awk '{ print "    listening: " $4 }'
	! awk '{ print $4 }' <<<"${listening}" | grep -Ev '^(127\.[0-9.]+|\[::1\]):[0-9]+$' ||
		fail "the demo listens beyond loopback (above)"
	pass "every listening socket of the demo is on loopback"

	wait_healthy "${CT_DEMO}"
}

check_no_secrets() {
	log "searching every layer of the image for keys and tokens"
	timeout 300 podman image save --quiet --format docker-archive -o "${WORK}/image.tar" "${IMAGE}"
	local base_layers
	read -r -a base_layers <<<"$(podman image inspect --format '{{range .RootFS.Layers}}{{.}} {{end}}' "${BASE_IMAGE}")"
	python3 "${HERE}/scan_image_secrets.py" "${WORK}/image.tar" "${base_layers[@]}" ||
		fail "the image holds key material or credentials (FOUND lines above)"
	pass "no private key, JWT, API key or key file in any layer the Dockerfile adds"
	rm -f "${WORK}/image.tar"
}

report_size() {
	log "image size"
	local size base_size
	size=$(podman image inspect --format '{{.Size}}' "${IMAGE}")
	base_size=$(podman image inspect --format '{{.Size}}' "${BASE_IMAGE}")
	podman images --format '    {{.Repository}}:{{.Tag}}  {{.Size}}' | grep -F -e "${IMAGE}" -e "${BASE_IMAGE}"
	printf '    image size: %d MB (debootstrap base %d MB + exporter layers %d MB)\n' \
		$((size / 1000000)) $((base_size / 1000000)) $(((size - base_size) / 1000000))
}

# ---------------------------------------------------------------------------------------------

main() {
	[[ $(id -u) -eq 0 ]] || fail "run as root: debootstrap and podman's overlay storage need it"
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	install_tools
	WORK=$(mktemp -d /var/tmp/qse-container-test.XXXXXX)
	configure_containers
	if command -v hadolint >/dev/null; then
		hadolint "${REPO_ROOT}/Dockerfile" || fail "hadolint reports the Dockerfile (above)"
		pass "hadolint Dockerfile"
	fi

	log "base image"
	local tarball
	tarball=$(base_tarball)
	timeout 300 podman import --quiet "${tarball}" "${BASE_IMAGE}" >/dev/null
	pass "${BASE_IMAGE} from ${tarball}"

	log "buildah bud --build-arg BASE_IMAGE=${BASE_IMAGE}"
	local build_start=${SECONDS}
	if ! timeout 900 buildah bud --isolation chroot --format docker --pull=never \
		--build-arg "BASE_IMAGE=${BASE_IMAGE}" -t "${IMAGE}" \
		-f "${REPO_ROOT}/Dockerfile" "${REPO_ROOT}" >"${WORK}/build.log" 2>&1; then
		tail -40 "${WORK}/build.log"
		fail "the image build failed (last lines above)"
	fi
	pass "built ${IMAGE} in $((SECONDS - build_start)) s"

	write_configs
	check_metadata
	check_config_check
	check_default_cmd
	check_demo
	check_no_secrets
	report_size
	log "all container checks passed"
}

main "$@"
