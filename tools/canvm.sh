#!/usr/bin/env bash
# canvm.sh — runs a command inside a qemu guest whose Debian kernel has SocketCAN (vcan,
# vxcan, can-gw), with no network device (-nic none). The host kernel has no CAN; the guest
# lets tests use real CAN sockets with can-utils as peers (docs/socketcan.md,
# ../shared/notes/socketcan-vm.md for the measured facts behind the qemu options).
#
# Usage:
#   tools/canvm.sh setup                      fetch and prepare the kernel and initramfs only
#   tools/canvm.sh [--rw DIR]... [--timeout S] [--] COMMAND [ARG...]
#
# The guest shares the host's / read-only and chroots into it, so host binaries (can-utils,
# python3, a cargo-built canmc or test binary) run unchanged; each --rw DIR is shared
# read-write at the same path; /tmp is a fresh tmpfs. COMMAND runs in the current directory
# with the caller's PATH, as root, after the CAN modules are loaded and `lo` is up. Its
# stdout and stderr come back on ours, and its exit status is ours.
#
# Never skips: when a package cannot be fetched or the guest does not boot, this prints why
# and exits 97 (setup) or 98 (boot). Exit 124 means COMMAND ran past --timeout.
#
# Env: CANVM_CACHE   cache folder (default ~/.cache/canmc-vm)
#      CANVM_KERNEL  kernel package version, e.g. 6.1.0-57-amd64 (default: what
#                    linux-image-amd64 depends on)
#      CANVM_VERBOSE=1 prints the guest console as it boots.
set -euo pipefail

die_setup() { echo "canvm: setup failed: $*" >&2; exit 97; }
die_boot() { echo "canvm: the VM did not start: $*" >&2; exit 98; }

CACHE=${CANVM_CACHE:-$HOME/.cache/canmc-vm}
mkdir -p "$CACHE"
CACHE=$(readlink -f "$CACHE")

need() {
    local missing=()
    for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    [[ ${#missing[@]} -eq 0 ]] || die_setup "missing ${missing[*]} (apt-get install qemu-system-x86 busybox-static kmod can-utils cpio xz-utils)"
}

kernel_version() {
    if [[ -n ${CANVM_KERNEL:-} ]]; then
        echo "$CANVM_KERNEL"
        return
    fi
    local dep
    dep=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: linux-image-\([0-9].*-amd64\)$/\1/p' | head -1)
    if [[ -z $dep ]]; then
        # A cached kernel serves when the package lists are not there (offline re-runs).
        dep=$(find "$CACHE" -maxdepth 1 -name 'vmlinux-*' -printf '%f\n' 2>/dev/null |
            sed 's/^vmlinux-//' | sort -V | tail -1)
    fi
    [[ -n $dep ]] || die_setup "cannot tell the kernel version: apt-cache knows no linux-image-amd64 (run apt-get update)"
    echo "$dep"
}

# Modules the guest loads, in dependency order (modprobe follows modules.dep).
MODULES=(virtio_mmio virtio_console 9pnet_virtio 9p can can-raw can-bcm can-gw vcan vxcan)

setup() {
    need qemu-system-x86_64 busybox depmod cpio xz dpkg-deb apt-get readelf
    V=$(kernel_version)
    VMLINUX=$CACHE/vmlinux-$V
    # The initramfs is named by what goes into it, so a changed /init or module list
    # builds a new one and an unchanged one is reused.
    local stamp
    stamp=$({ write_init; echo "${MODULES[*]}"; } | md5sum | cut -c1-12)
    INITRD=$CACHE/initrd-$V-$stamp.cpio
    [[ -s $VMLINUX && -s $INITRD ]] && return 0
    local work=$CACHE/build-$V
    rm -rf "$work"
    mkdir -p "$work"
    (cd "$work" && apt-get download "linux-image-$V" >/dev/null 2>"$work/apt.err") ||
        die_setup "apt-get download linux-image-$V: $(tail -1 "$work/apt.err")"
    dpkg-deb -x "$work"/linux-image-*.deb "$work/root" || die_setup "dpkg-deb -x failed"
    rm -f "$CACHE/initrd-$V"-*.cpio
    local vmlinuz=$work/root/boot/vmlinuz-$V off
    # Uncompressed kernel: decompressing inside the guest costs ~30 s under TCG. The bzImage
    # carries an xz stream; find its magic and unpack from there.
    off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1)
    [[ -n $off ]] || die_setup "no xz stream in $vmlinuz"
    tail -c +$((off + 1)) "$vmlinuz" | xz -dc 2>/dev/null >"$VMLINUX.tmp" || true
    [[ $(head -c 4 "$VMLINUX.tmp" | od -An -tx1 | tr -d ' ') == 7f454c46 ]] ||
        die_setup "the kernel unpacked from $vmlinuz is not an ELF file"
    mv "$VMLINUX.tmp" "$VMLINUX"
    depmod -b "$work/root" "$V" || die_setup "depmod failed"

    local ird=$work/initrd mods=$work/root/lib/modules/$V
    mkdir -p "$ird"/{bin,dev,proc,sys,host,ctl,tmp} "$ird/lib/modules/$V"
    cp "$(readlink -f "$(command -v busybox)")" "$ird/bin/busybox"
    file_is_static "$ird/bin/busybox" || die_setup "busybox is not static (install busybox-static)"
    # Copy each module with its dependencies, keeping the paths modules.dep names.
    local m path
    local -A seen=()
    for m in "${MODULES[@]}"; do
        path=$(grep -E "(^|/)${m//-/[-_]}\.ko(\.xz|\.zst)?:" "$mods/modules.dep" | head -1) ||
            die_setup "module $m is not in linux-image-$V"
        for f in ${path//:/}; do
            [[ -n ${seen[$f]:-} ]] && continue
            seen[$f]=1
            mkdir -p "$ird/lib/modules/$V/$(dirname "$f")"
            cp "$mods/$f" "$ird/lib/modules/$V/$f"
        done
    done
    cp "$mods"/modules.{order,builtin} "$ird/lib/modules/$V/" 2>/dev/null || true
    depmod -b "$ird" "$V" 2>/dev/null || die_setup "depmod (initramfs) failed"
    write_init | sed "s/MODULE_LIST/${MODULES[*]}/" >"$ird/init"
    chmod +x "$ird/init"
    (cd "$ird" && find . | cpio -o -H newc --quiet >"$INITRD.tmp") || die_setup "cpio failed"
    mv "$INITRD.tmp" "$INITRD"
    rm -rf "$work"
}

file_is_static() {
    # A dynamic executable names its loader in a PT_INTERP header.
    ! readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'
}

# The guest's /init: load modules, mount the shares, run the command chrooted into the host's
# /, write its output and status into the control share, power off.
write_init() {
    cat <<'INIT'
#!/bin/busybox sh
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in MODULE_LIST; do
    modprobe "$m" || echo "canvm-guest: modprobe $m failed" >/dev/console
done
p9() { mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,"$3" "$1" "$2"; }
p9 ctl /ctl rw || { echo "canvm-guest: cannot mount the control share" >/dev/console; echo o >/proc/sysrq-trigger; }
p9 hostroot /host ro
ip link set lo up
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mount -t devpts devpts /host/dev/pts 2>/dev/null
mount -t tmpfs tmp /host/tmp
mount -t tmpfs run /host/run 2>/dev/null
n=0
while read -r tag path; do
    [ -n "$tag" ] || continue
    mkdir -p "/host$path" 2>/dev/null
    p9 "$tag" "/host$path" rw || echo "canvm-guest: cannot mount $path" >>/ctl/stderr
done </ctl/mounts
echo started >/ctl/started
chroot /host /bin/sh "$(cat /ctl/script-path)" >/ctl/stdout 2>>/ctl/stderr </dev/null
echo $? >/ctl/rc
sync
echo o >/proc/sysrq-trigger
INIT
}

if [[ ${1:-} == setup ]]; then
    setup
    echo "canvm: ready: $VMLINUX $INITRD"
    exit 0
fi

RW=()
TIMEOUT=600
while [[ $# -gt 0 ]]; do
    case $1 in
        --rw) RW+=("$(readlink -f "$2")"); shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --) shift; break ;;
        -*) echo "canvm: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || { echo "usage: canvm.sh [--rw DIR]... [--timeout S] [--] COMMAND [ARG...]" >&2; exit 2; }
# The guest's /tmp is a fresh tmpfs: a working directory under it (a checkout in /tmp)
# would vanish there, so it is shared read-write at its path, before the --rw folders
# (which may lie inside it).
here=$(readlink -f "$PWD")
case $here in
    /tmp | /tmp/*) RW=("$here" "${RW[@]}") ;;
esac

setup
RUN=$(mktemp -d "$CACHE/run.XXXXXX")
cleanup() { rm -rf "$RUN"; }
trap cleanup EXIT

# The command's script: the caller's directory and PATH, then the command, quoted.
{
    echo "cd $(printf %q "$PWD") || exit 96"
    echo "export PATH=$(printf %q "$PATH") HOME=/tmp CANMC_IN_VM=1"
    for var in CARGO_TARGET_DIR CANMC_PYTHON RUST_BACKTRACE; do
        [[ -n ${!var:-} ]] && echo "export $var=$(printf %q "${!var}")"
    done
    printf '%q ' "$@"
    echo
} >"$RUN/script.sh"
echo "$RUN/script.sh" >"$RUN/script-path"
: >"$RUN/stderr"
: >"$RUN/mounts"
args=()
i=0
for dir in "${RW[@]}"; do
    args+=(-fsdev "local,id=rw$i,path=$dir,security_model=none"
        -device "virtio-9p-device,fsdev=rw$i,mount_tag=rw$i")
    echo "rw$i $dir" >>"$RUN/mounts"
    i=$((i + 1))
done

MHZ=$(awk -F: '/^cpu MHz/ {printf "%d", $2; exit}' /proc/cpuinfo)
[[ -n $MHZ && $MHZ -gt 0 ]] || MHZ=2000
APPEND="console=ttyS0 panic=-1 quiet pci=off mitigations=off cryptomgr.notests=1"
APPEND+=" lsm=capability rodata=off tsc_early_khz=$((MHZ * 1000)) rdinit=/init"

# --timeout covers the command; the boot gets 120 s more (TCG is slow on a loaded host).
status=0
# --foreground: qemu stays in our process group, so stopping this script stops it.
timeout --foreground --kill-after=5 $((TIMEOUT + 120)) qemu-system-x86_64 \
    -M microvm,pit=on,pic=on,rtc=on -accel tcg -cpu max -smp 1 -m 1024 \
    -nic none -display none -no-reboot -nodefaults -serial "file:$RUN/console" \
    -kernel "$VMLINUX" -initrd "$INITRD" -append "$APPEND" \
    -fsdev "local,id=ctl,path=$RUN,security_model=none" \
    -device virtio-9p-device,fsdev=ctl,mount_tag=ctl \
    -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap" \
    -device virtio-9p-device,fsdev=hostroot,mount_tag=hostroot \
    "${args[@]}" </dev/null >"$RUN/qemu.out" 2>&1 || status=$?

if [[ ${CANVM_VERBOSE:-0} == 1 ]]; then cat "$RUN/console" >&2; fi
if [[ ! -e $RUN/started ]]; then
    {
        echo "--- qemu (exit $status):"
        cat "$RUN/qemu.out"
        echo "--- guest console:"
        tail -40 "$RUN/console" 2>/dev/null
    } >&2
    die_boot "the guest never reached the command (see above)"
fi
cat "$RUN/stdout" 2>/dev/null || true
cat "$RUN/stderr" >&2
if [[ ! -s $RUN/rc ]]; then
    if [[ $status -eq 124 || $status -eq 137 ]]; then
        echo "canvm: the command ran past --timeout $TIMEOUT s" >&2
        exit 124
    fi
    tail -20 "$RUN/console" >&2
    die_boot "the guest stopped before the command finished (qemu exit $status)"
fi
exit "$(cat "$RUN/rc")"
