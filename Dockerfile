# syntax=docker/dockerfile:1
#
# One image for both roles of a Caviar search:
#   master:  python -m optimizer --mongo URL --exp-key K ...
#   worker:  python -m worker    --mongo URL --exp-key K        (the default CMD)
# docker-compose.yml runs both from this image; see the README, "Running with Docker".
#
# Lint: hadolint Dockerfile (run by tests/test_containers.py).

# The official TensorFlow GPU image: CUDA, cuDNN, Python and tensorflow (which
# brings keras 3) are already in it. Bump the tag deliberately; the
# build below refuses to swap the image's tensorflow for another one.
FROM tensorflow/tensorflow:2.21.0-gpu

LABEL org.opencontainers.image.title="caviar" \
      org.opencontainers.image.description="Parallel, crash-safe hyperparameter and architecture search for Keras models over MongoDB"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# graphviz provides `dot`, which pydot calls to draw models (results/*.png).
# Pinned to the 2.42 series, which Ubuntu 22.04 and 24.04 (the bases of the
# TensorFlow images) both ship as 2.42.2; the glob lets the distribution's
# security updates of that series in. A base image on another series fails
# here, on purpose: check graphviz when bumping the tag.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        'graphviz=2.42.*' \
    && rm -rf /var/lib/apt/lists/* \
    && dot -V

# The unprivileged user that runs the search. Give it your own uid/gid
# (APP_UID / APP_GID in .env) so that it can write to the bind-mounted
# ./results. Ubuntu 24.04 based images come with a user "ubuntu" holding uid
# 1000: it goes, and --non-unique covers any other clash.
ARG APP_UID=1000
ARG APP_GID=1000
RUN if id -u ubuntu >/dev/null 2>&1; then userdel ubuntu && rm -rf /home/ubuntu; fi \
    && groupadd --gid "${APP_GID}" --non-unique caviar \
    && useradd --uid "${APP_UID}" --gid "${APP_GID}" --non-unique --no-log-init \
        --create-home --shell /bin/bash caviar \
    && install -d -o caviar -g caviar /app /app/results /app/ml_req \
    && install -d -m 1777 /var/lib/caviar/gpu-locks

# Install the project in two steps so that editing the code does not
# re-download the dependencies: first the dependencies (from pyproject.toml,
# with no package code yet), then the code itself with --no-deps.
#
# /tmp/image-stack.txt pins every package of the TensorFlow stack the image
# ships (tensorflow, keras, numpy, CUDA wheels...) as a pip constraint: pip can
# add hyperopt, pymongo, pydot, tqdm, but the build fails instead of replacing
# the image's tensorflow with another build.
WORKDIR /usr/src/caviar
COPY pyproject.toml README.md ./
RUN python -m pip list --format=freeze \
        | grep -iE '^(tensorflow|tensorboard|tf[-_]keras|keras|numpy|ml[-_]dtypes|h5py|protobuf|nvidia-)' \
        > /tmp/image-stack.txt \
    && grep -iq '^tensorflow==' /tmp/image-stack.txt \
    && python -m pip install --no-cache-dir --constraint /tmp/image-stack.txt .

COPY caviar ./caviar
COPY optimizer ./optimizer
COPY worker ./worker
COPY neural_net ./neural_net
RUN python -m pip install --no-cache-dir --no-deps --constraint /tmp/image-stack.txt . \
    && rm -rf build ./*.egg-info \
    && python -m pip list --format=freeze \
        | grep -iE '^(tensorflow|tensorboard|tf[-_]keras|keras|numpy|ml[-_]dtypes|h5py|protobuf|nvidia-)' \
        | diff /tmp/image-stack.txt -

# Workers started with CAVIAR_GPU_LOCK_DIR set (docker-compose.yml does) pick
# one free GPU each. Compose cannot do it: every replica of a service with
# `count: 1` gets GPU 0, so the workers reserve all GPUs and this entrypoint
# takes an flock on <lock dir>/<GPU uuid>.lock for the first free GPU, sets
# CUDA_VISIBLE_DEVICES to that GPU and execs the command with the lock held;
# the lock goes when the process ends. Without CAVIAR_GPU_LOCK_DIR, or with
# CUDA_VISIBLE_DEVICES already set, it just runs the command.
COPY --chmod=0755 <<'EOF' /usr/local/bin/caviar-entrypoint
#!/bin/sh
set -eu
lock_dir=${CAVIAR_GPU_LOCK_DIR:-}
if [ -z "$lock_dir" ] || [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    exec "$@"
fi
if ! gpus=$(nvidia-smi --query-gpu=uuid --format=csv,noheader 2>/dev/null) || [ -z "$gpus" ]; then
    echo "caviar-entrypoint: no GPU found (nvidia-smi failed), running without GPU pinning" >&2
    exec "$@"
fi
sleeper=
trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 143' TERM
trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 130' INT
said_waiting=
while :; do
    for gpu in $gpus; do
        lock="$lock_dir/$gpu.lock"
        touch "$lock" 2>/dev/null || true
        if [ ! -r "$lock" ]; then
            echo "caviar-entrypoint: cannot create or read $lock" >&2
            exit 1
        fi
        exec 9<"$lock"
        if flock -n 9; then
            export CUDA_VISIBLE_DEVICES="$gpu"
            echo "caviar-entrypoint: this worker uses GPU $gpu" >&2
            exec "$@"
        fi
        exec 9<&-
    done
    if [ -z "$said_waiting" ]; then
        echo "caviar-entrypoint: every GPU already has a worker; waiting for one to become free" >&2
        said_waiting=1
    fi
    sleep 15 &
    sleeper=$!
    wait "$sleeper"
    sleeper=
done
EOF

# Check from outside the source tree that the installed packages are found.
WORKDIR /app
RUN python -c "import hyperopt, pymongo, pydot, tqdm, importlib.util as u, sys; \
missing = [m for m in ('optimizer', 'worker', 'neural_net') if u.find_spec(m) is None]; \
sys.exit(f'not installed: {missing}' if missing else 0)"

ENV HOME=/home/caviar
USER ${APP_UID}:${APP_GID}
VOLUME ["/app/results"]

ENTRYPOINT ["/usr/local/bin/caviar-entrypoint"]
CMD ["python", "-m", "worker"]
