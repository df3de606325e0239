#!/bin/sh
# tritonllm: checks the multi-node serving image's layout, the one the launch scripts rely on
# (components/serving/builders/multinode.py): run as the Dockerfile's last step, so an image that lacks any
# of it is never pushed. TRITONLLM_IMAGE_ROOT checks a tree laid out like the image instead of / (tests).
set -eu
ROOT="${TRITONLLM_IMAGE_ROOT:-}"
missing=""
need() {  # need <what> <pattern>...: at least one of the paths exists under ROOT
  what="$1"; shift
  for pattern in "$@"; do
    for path in $ROOT$pattern; do
      if [ -e "$path" ]; then echo "tritonllm-verify-image: $what: ${path#"$ROOT"}"; return 0; fi
    done
  done
  missing="$missing $what"
}
need sshd /usr/sbin/sshd
need ssh /usr/bin/ssh
need curl /usr/bin/curl
need mpirun /opt/amazon/openmpi/bin/mpirun
need orted /opt/amazon/openmpi/bin/orted
need libmpi /opt/amazon/openmpi/lib/libmpi.so.40
need libfabric /opt/amazon/efa/lib/libfabric.so.1 /opt/amazon/efa/lib64/libfabric.so.1
need fi_info /opt/amazon/efa/bin/fi_info
# by the name the image's NCCL_NET_PLUGIN=ofi makes NCCL load (Dockerfile)
need aws-ofi-nccl '/opt/amazon/ofi-nccl/lib/*/libnccl-net-ofi.so' '/opt/amazon/ofi-nccl/lib/libnccl-net-ofi.so'
need all_reduce_perf /opt/nccl-tests/build/all_reduce_perf
need tritonserver /opt/tritonserver/bin/tritonserver
# The CUDA runtime under the name aws-ofi-nccl dlopen()s (Dockerfile: --enable-cudart-dynamic), found the way
# the loader looks for a bare name (ld.so(8)): LD_LIBRARY_PATH, the ld.so.conf.d folders (its cache), then
# the default folders. Without it the plugin does not start and NCCL runs on TCP sockets.
loader_finds() {  # loader_finds <name>: prints where the loader finds <name> in the image
  for dir in $(printf '%s' "${LD_LIBRARY_PATH:-}" | tr ':' ' ') \
             $(cat "$ROOT"/etc/ld.so.conf.d/*.conf 2>/dev/null | sed -n 's|^[[:space:]]*\(/[^[:space:]]*\).*|\1|p') \
             /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64 /lib /usr/lib; do
    if [ -e "$ROOT$dir/$1" ]; then echo "$dir/$1"; return 0; fi
  done
  return 1
}
if cudart="$(loader_finds libcudart.so)"; then
  echo "tritonllm-verify-image: libcudart.so (dlopen()ed by aws-ofi-nccl): $cudart"
else
  echo "tritonllm-verify-image: the loader finds no libcudart.so, the name aws-ofi-nccl dlopen()s" >&2
  missing="$missing libcudart.so"
fi
# HPC-X's Open MPI must be gone: a second mpirun/orted on PATH would start ranks with the wrong libmpi.
if [ -e "$ROOT/opt/hpcx/ompi/bin/mpirun" ]; then
  echo "tritonllm-verify-image: /opt/hpcx/ompi is still there (the installer's Open MPI replaces it)" >&2
  exit 1
fi
if [ -n "$missing" ]; then
  echo "tritonllm-verify-image: missing:$missing" >&2
  exit 1
fi
# Every library the plugin and libfabric link must resolve in this image (a plugin built for another CUDA
# major, e.g. needing libcudart.so.12 on a CUDA 13 base, would fail to load and NCCL fall back to sockets).
# libcuda and libnvidia-ml come from the node's driver at run time (NVIDIA container toolkit), not the image.
if command -v ldd >/dev/null 2>&1; then
  for lib in $ROOT/opt/amazon/ofi-nccl/lib/*/libnccl-net*.so $ROOT/opt/amazon/ofi-nccl/lib/libnccl-net*.so \
             $ROOT/opt/amazon/efa/lib/libfabric.so.1; do
    [ -e "$lib" ] || continue
    unresolved="$(ldd "$lib" 2>/dev/null | grep 'not found' | grep -v -e 'libcuda\.so' -e 'libnvidia-ml\.so' || true)"
    if [ -n "$unresolved" ]; then
      echo "tritonllm-verify-image: ${lib#"$ROOT"} does not load here:" $unresolved >&2
      exit 1
    fi
  done
fi
echo "tritonllm-verify-image: ok"
