#!/usr/bin/env bash
# cli_demo_fake.sh: scripts/demo's process handling (start in the background with PID files, wait for the
# kubeconfig and /readyz, run the task, run twice, --stop, nothing left behind) checked with stand-ins
# for kubesim and prewarmd: small scripts that write a kubeconfig and serve cli_fake_server.py. The
# real prewarmctl runs the task. demo.sh does the same with the real programs.
set -u
root=${PW_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
ln -s "${PW_BIN:-$root/build/asan/bin}/prewarmctl" "$tmp/bin/prewarmctl"

# kubesim stand-in: writes the kubeconfig (with the node count for the prewarmd stand-in), then idles.
cat >"$tmp/bin/kubesim" <<'EOF'
#!/usr/bin/env bash
nodes=3 out=""
while [ $# -gt 0 ]; do
    case "$1" in --nodes) nodes=$2; shift ;; --kubeconfig-out) out=$2; shift ;; esac
    shift
done
trap 'exit 0' TERM
sleep 0.3
printf 'apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: sim\ncurrent-context: sim\n# nodes %s\n' "$nodes" >"$out.tmp"
mv "$out.tmp" "$out"
while :; do sleep 0.2; done
EOF
# prewarmd stand-in: without a SQLite store (so the demo's fallback to memory: is exercised); serves the
# fake API on --listen's port.
cat >"$tmp/bin/prewarmd" <<EOF
#!/usr/bin/env bash
if [ "\${1:-}" = --help ]; then echo "  --store   store url (memory:)"; exit 0; fi
kc="" port="" store=""
while [ \$# -gt 0 ]; do
    case "\$1" in --kubeconfig) kc=\$2; shift ;; --listen) port=\${2##*:}; shift ;; --store) store=\$2; shift ;; esac
    shift
done
case "\$store" in memory:) ;; *) echo "prewarmd: --store \$store: unknown store kind" >&2; exit 2 ;; esac
nodes=\$(sed -n 's/^# nodes //p' "\$kc")
python3 "$root/tests/integration/cli_fake_server.py" "\$kc.port" --port "\$port" --nodes "\$nodes" --rate 200 &
child=\$!
trap 'kill \$child; wait \$child; exit 0' TERM
wait \$child
EOF
chmod +x "$tmp/bin/kubesim" "$tmp/bin/prewarmd"

PW_BIN_RELEASE=$tmp/bin DEMO_TEST_STORE=memory "$root/tests/integration/demo.sh"
