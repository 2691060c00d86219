#!/usr/bin/env bash
# The paper profile on a GPU machine, at paper geometry, scaled to a short device budget.
#
# Two steps. Here (with pip and a package index), pack the study's dependencies that the GPU
# machine's Python 3.12 lacks (its image has torch, torchvision, numpy, scipy, pandas, matplotlib,
# seaborn, scikit-image; not monai, grad-cam, nibabel, pooch, papermill, ipykernel), unpacked
# and stripped of their tests, into .gpu/site.tar.xz (about 4 MB; .gpu/ is git-ignored locally):
#   bash benchmarks/paper_gpu.sh bundle
# There, in the repository root (the `device` tool: run with carry [".gpu"]):
#   OUT=/tmp/out BUDGET_S=420 bash benchmarks/paper_gpu.sh run [--set KEY=VALUE ...]
# BUDGET_S bounds the pipeline (it is interrupted, and what it wrote is still packed, when it
# runs out). What comes back is in $OUT:
#   gpu.txt           the GPU, driver, torch and CPU count; GPU memory used at the end
#   pipeline.log      the pipeline's progress and any failure
#   paper_gpu.tgz     the figure folder, the executed notebooks, provenance and logs
set -u
OUT=${OUT:-/tmp/paper-gpu-out}
BUDGET_S=${BUDGET_S:-420}
RUN=runs/paper-gpu
FIG=runs/paper-gpu-figures
mkdir -p "$OUT"

if [ "${1:-}" = bundle ]; then
    # versions as pinned in pyproject.toml and resolved in .venv (jedi and debugpy are optional
    # for ipykernel and too large for the device's 64 MiB working tree)
    pkgs="grad-cam==1.5.7 ttach==0.0.3 monai==1.6.1 nibabel==5.4.2 pooch==1.9.0 platformdirs==4.14.9
      papermill==2.7.0 entrypoints==0.4.2 tenacity==9.2.1 nbformat==5.11.1 fastjsonschema==2.22.3
      jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
      jupyter_core==5.9.1 traitlets==5.16.1 nbclient==0.11.0 jupyter_client==8.10.0 pyzmq==27.3.0
      tornado==6.6.1 ipykernel==7.4.0 comm==0.2.3 ipython==9.18.1 ipython_pygments_lexers==1.1.1
      parso==0.8.7 matplotlib-inline==0.2.2 nest-asyncio2==1.7.4 pexpect==4.9.0 ptyprocess==0.7.0
      prompt_toolkit==3.0.53 wcwidth==0.9.4 stack-data==0.6.3 executing==2.3.0 asttokens==3.0.2 pure_eval==0.2.4"
    tmp=$(mktemp -d)
    for p in $pkgs; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux1_x86_64 -d "$tmp/whl" "$p" 2>/dev/null \
        || python3 -m pip wheel -q --no-deps -w "$tmp/whl" "$p" \
        || { echo "cannot fetch $p" >&2; exit 1; }
    done
    mkdir -p "$tmp/site" .gpu
    for w in "$tmp"/whl/*.whl; do unzip -q -o "$w" -d "$tmp/site"; done
    find "$tmp/site" -type d \( -name tests -o -name testing -o -name __pycache__ \) -prune -exec rm -rf {} +
    tar cJf .gpu/site.tar.xz.part -C "$tmp/site" . && mv .gpu/site.tar.xz.part .gpu/site.tar.xz
    rm -rf "$tmp"
    ls -la .gpu/site.tar.xz
    exit 0
fi
[ "${1:-}" = run ] && shift

if [ -f .gpu/site.tar.xz ]; then
    mkdir -p /tmp/site && tar xJf .gpu/site.tar.xz -C /tmp/site || { echo "cannot unpack .gpu/site.tar.xz" >&2; exit 1; }
fi
export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
# papermill's "python3" kernel: this interpreter, with the wheels on its path
python3 -m ipykernel install --prefix /tmp/jk --name python3 >/dev/null 2>&1 && export JUPYTER_PATH=/tmp/jk/share/jupyter

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, monai, pytorch_grad_cam, papermill; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), 'monai', monai.__version__)"
    nproc
} > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

rm -rf "$RUN" "$FIG"
start=$(date +%s)
timeout --signal=INT --kill-after=20 "$BUDGET_S" \
    python3 -m umcam_lib.pipeline --profile paper --out "$RUN" --figures "$FIG" "$@" 2>&1 | tee "$OUT/pipeline.log"
rc=${PIPESTATUS[0]}
echo "pipeline exit $rc after $(( $(date +%s) - start )) s" | tee -a "$OUT/pipeline.log"
nvidia-smi --query-gpu=memory.used --format=csv,noheader >> "$OUT/gpu.txt" 2>&1

tar czf "$OUT/paper_gpu.tgz" --exclude='*.npy' --exclude='*.npz' --exclude='*.pt' --exclude='*.nii*' \
    "$FIG" $(ls -d "$RUN"/*.json "$RUN"/notebooks "$RUN"/logs "$RUN"/provenance 2>/dev/null) 2>/dev/null
ls -la "$OUT"
exit "$rc"
