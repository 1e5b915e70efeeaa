#!/usr/bin/env bash
# Copies this machine's Open MPI (Debian's openmpi-bin + libopenmpi3, with PMIx and their libraries) into DEST as a
# relocatable tree, for a GPU machine that has no mpirun (bench/gpu/prepare.sh with ATH_GPU_MPI=1 calls it):
#
#   bash bench/gpu/scale/mpi-bundle.sh DEST
#
# DEST/bin                 mpirun (orterun), orted, ompi_info
# DEST/lib                 libmpi, libopen-rte, libopen-pal, libpmix and every library they and the kept components
#                          need that is not part of glibc (ldd closure), so the jar's libathanor_mpi.so (linked against
#                          libmpi.so.40 here) loads there from LD_LIBRARY_PATH; zlib and libudev in lib/fallback, used
#                          only where the machine has none
# DEST/lib/x86_64-linux-gnu/openmpi/lib/openmpi3   the MCA components, where OPAL_PREFIX=DEST makes Open MPI look;
#                          those for InfiniBand, UCX, OFI, PSM, OpenSHMEM and monitoring are left out (one host,
#                          shared memory and TCP are all a two-process job on one machine uses)
# DEST/share/openmpi       Open MPI's help texts (its error messages are read from them)
# DEST/pmix                PMIx's plugins and help texts
# DEST/env.sh              sourced by the GPU-side scripts: PATH, LD_LIBRARY_PATH, OPAL_PREFIX and the root settings
# Use: source DEST/env.sh; mpirun -np 2 ... (bench/gpu/scale/check.sh does).
set -euo pipefail
DEST=${1:?usage: mpi-bundle.sh DEST}
SYS=/usr/lib/x86_64-linux-gnu
ORTERUN=$(readlink -f "$(command -v mpirun)") || { echo "mpi-bundle.sh: no mpirun here (apt-get install openmpi-bin)" >&2; exit 1; }
"$ORTERUN" --version 2>&1 | grep -E "Open ?(MPI|RTE)" > /dev/null || { echo "mpi-bundle.sh: $ORTERUN is not Open MPI's" >&2; exit 1; }
[ -d "$SYS/openmpi/lib/openmpi3" ] || { echo "mpi-bundle.sh: no $SYS/openmpi/lib/openmpi3 (Debian's libopenmpi3)" >&2; exit 1; }

rm -rf "$DEST"
mkdir -p "$DEST/bin" "$DEST/lib" "$DEST/lib/x86_64-linux-gnu/openmpi/lib" "$DEST/share"
cp "$ORTERUN" "$DEST/bin/orterun"
ln -s orterun "$DEST/bin/mpirun"
ln -s orterun "$DEST/bin/mpiexec"
for b in orted ompi_info; do cp "$(readlink -f "$(command -v $b)")" "$DEST/bin/$b"; done
C=$DEST/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
cp -r "$SYS/openmpi/lib/openmpi3" "$C"
# components for fabrics a single machine lacks, and OpenSHMEM's (its own library): left out with their libraries
rm -f "$C"/*ucx* "$C"/*ofi* "$C"/*psm* "$C"/*openib* "$C"/*monitoring* "$C"/mca_atomic_* "$C"/mca_memheap_* \
  "$C"/mca_scoll_* "$C"/mca_spml_* "$C"/mca_sshmem_* "$C"/mca_reachable_netlink.so
cp -r /usr/share/openmpi "$DEST/share/openmpi"
# PMIx's own plugins (compression; found through PMIX_MCA_mca_base_component_path, as PMIx does not follow OPAL_PREFIX)
mkdir -p "$DEST/pmix/lib"
[ -d "$SYS/pmix2/lib/pmix" ] && cp -r "$SYS/pmix2/lib/pmix" "$DEST/pmix/lib/pmix"
[ -d "$SYS/pmix2/share" ] && cp -r "$SYS/pmix2/share" "$DEST/pmix/share"

# the ldd closure of the launcher, libmpi and the kept components, glibc and the C++/GCC runtimes excepted
glibc='^(libc|libm|libdl|libpthread|librt|libresolv|libutil|ld-linux-x86-64|linux-vdso|libgcc_s|libstdc\+\+)\.so'
list=$(for f in "$DEST"/bin/orterun "$DEST"/bin/orted "$DEST"/bin/ompi_info "$SYS"/libmpi.so.40 "$C"/*.so "$DEST"/pmix/lib/pmix/*.so; do
         ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }'
       done | sort -u)
# zlib and libudev, which any distribution has in a newer version, go to lib/fallback: env.sh adds it only where the
# machine lacks them (an older copy first on LD_LIBRARY_PATH would shadow the newer system one for every program)
mkdir -p "$DEST/lib/fallback"
while read -r name path; do
  [[ "$name" =~ $glibc ]] && continue
  case "$name" in libz.so.*|libudev.so.*) cp -L "$path" "$DEST/lib/fallback/$name";; *) cp -L "$path" "$DEST/lib/$name";; esac
done <<< "$list"
missing=$(for f in "$DEST"/bin/orterun "$C"/*.so; do
            LD_LIBRARY_PATH=$DEST/lib:$DEST/lib/fallback ldd "$f" | grep "not found" || true; done)
[ -z "$missing" ] || { echo "mpi-bundle.sh: unresolved libraries: $missing" >&2; exit 1; }

cat > "$DEST/env.sh" <<'EOF'
# Open MPI from the payload (bench/gpu/scale/mpi-bundle.sh): source it, then mpirun.
ATH_MPI_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OPAL_PREFIX=$ATH_MPI_HOME PMIX_MCA_mca_base_component_path=$ATH_MPI_HOME/pmix/lib/pmix
export PATH=$ATH_MPI_HOME/bin:$PATH
export LD_LIBRARY_PATH=$ATH_MPI_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for f in "$ATH_MPI_HOME"/lib/fallback/*; do
  [ -e "$f" ] && ! ldconfig -p 2>/dev/null | grep -q "${f##*/} " && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$ATH_MPI_HOME/lib/fallback
done
# root in a container, no fabric: the settings the MPI tests use; no system-wide parameter file
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_pml=ob1 OMPI_MCA_mca_base_param_files=/dev/null
EOF
echo "mpi-bundle.sh: $(du -sh "$DEST" | cut -f1) in $DEST ($("$ORTERUN" --version 2>&1 | head -1))"
