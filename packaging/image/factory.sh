#!/usr/bin/env bash
# factory.sh prepares a Raspberry Pi OS / Debian root file system (a directory, or the root
# partition of an .img) so that the camera provisions itself by claim on its first boot:
#   - installs the edgecam .deb of the image's architecture (the user, /var/lib/edgecam, the
#     unit and the documented configuration come with it);
#   - installs the batch's claim certificate and key (/etc/edgecam/claim.pem and claim.key,
#     0600, owned by the service user) and the AWS root CA (/etc/edgecam/AmazonRootCA1.pem);
#   - sets iot.endpoint, iot.ca_cert, credentials.endpoint, aws.region (and, when given,
#     provisioning.template and credentials.role_alias) in /etc/edgecam/edgecam.yaml;
#   - enables edgecam.service (multi-user.target.wants);
#   - checks the result with `edgecam config validate` run inside the image.
#
# usage: packaging/image/factory.sh (--root DIR | --image FILE.img) (--deb FILE | --debs DIR)
#          --claim-cert FILE --claim-key FILE --root-ca FILE
#          --iot-endpoint HOST[:PORT] --credentials-endpoint HOST[:PORT]
#          [--region REGION] [--template NAME] [--role-alias NAME] [--with-deps] [--no-chroot]
#
#   --debs DIR     pick edgecam_*_<arch>.deb from DIR (what `make deb ARCH=…` writes to dist/)
#   --region       default: read from the IoT endpoint (…iot.<region>.amazonaws.com)
#   --with-deps    install the .deb with the image's apt (chroot, needs network), pulling
#                  GStreamer in; without it the image must already have the dependencies
#   --no-chroot    never run the image's programs: dpkg --root --force-script-chrootless
#                  (the package's scripts honour DPKG_ROOT) and no final validation run
#
# Installing runs the image's own dpkg in a chroot when the image's programs can run here
# (same architecture, or qemu-user through binfmt_misc: apt-get install qemu-user-static);
# otherwise it uses the host's dpkg on the directory (--no-chroot behaviour).
# Run as root. Exit status 2: bad arguments; 1: the installation failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prog=factory
die() { echo "$prog: $*" >&2; exit 1; }
usage() { echo "$prog: $*" >&2; echo "usage: $0 (--root DIR | --image FILE.img) (--deb FILE | --debs DIR) --claim-cert FILE --claim-key FILE --root-ca FILE --iot-endpoint HOST --credentials-endpoint HOST [--region R] [--template T] [--role-alias A] [--with-deps] [--no-chroot]" >&2; exit 2; }

root= image= deb= debs= claim_cert= claim_key= root_ca= iot= creds= region= template= role_alias=
with_deps=0 no_chroot=0
while [ $# -gt 0 ]; do
  opt=$1
  case $opt in
    --with-deps) with_deps=1; shift; continue ;;
    --no-chroot) no_chroot=1; shift; continue ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    --*) [ $# -ge 2 ] && [ -n "$2" ] || usage "$opt needs a value" ;;
    *) usage "unexpected argument '$opt'" ;;
  esac
  val=$2
  shift 2
  case $opt in
    --root) root=$val ;;
    --image) image=$val ;;
    --deb) deb=$val ;;
    --debs) debs=$val ;;
    --claim-cert) claim_cert=$val ;;
    --claim-key) claim_key=$val ;;
    --root-ca) root_ca=$val ;;
    --iot-endpoint) iot=$val ;;
    --credentials-endpoint) creds=$val ;;
    --region) region=$val ;;
    --template) template=$val ;;
    --role-alias) role_alias=$val ;;
    *) usage "unknown option $opt" ;;
  esac
done

# --- arguments ------------------------------------------------------------------------------
[ -n "$root" ] || [ -n "$image" ] || usage "say where the root file system is: --root DIR or --image FILE.img"
[ -z "$root" ] || [ -z "$image" ] || usage "give --root or --image, not both"
[ -n "$deb" ] || [ -n "$debs" ] || usage "say which package to install: --deb FILE.deb or --debs DIR"
[ -z "$deb" ] || [ -z "$debs" ] || usage "give --deb or --debs, not both"
for pair in "--claim-cert:$claim_cert" "--claim-key:$claim_key" "--root-ca:$root_ca" \
  "--iot-endpoint:$iot" "--credentials-endpoint:$creds"; do
  [ -n "${pair#*:}" ] || usage "${pair%%:*} is required"
done
host_re='^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$'
[[ $iot =~ $host_re ]] || usage "--iot-endpoint must be host[:port] without a scheme, e.g. abc123-ats.iot.eu-west-1.amazonaws.com (got '$iot')"
[[ $creds =~ $host_re ]] || usage "--credentials-endpoint must be host[:port] without a scheme, e.g. c2ab.credentials.iot.eu-west-1.amazonaws.com (got '$creds')"
if [ -z "$region" ]; then
  region=$(sed -nE 's/^.*\.iot\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?(:[0-9]+)?$/\1/p' <<<"$iot")
  [ -n "$region" ] || usage "cannot read the region from --iot-endpoint $iot: give --region"
fi
[[ $region =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || usage "--region must be an AWS region such as eu-west-1 (got '$region')"
name_re='^[A-Za-z0-9_.:-]+$'
[ -z "$template" ] || [[ $template =~ $name_re ]] || usage "--template may hold letters, digits and _.:- only (got '$template')"
[ -z "$role_alias" ] || [[ $role_alias =~ $name_re ]] || usage "--role-alias may hold letters, digits and _.:- only (got '$role_alias')"

command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl): it checks the certificates"
for f in "$claim_cert" "$claim_key" "$root_ca"; do [ -f "$f" ] || usage "no file at $f"; done
openssl x509 -in "$claim_cert" -noout 2>/dev/null || usage "--claim-cert $claim_cert is not a PEM certificate"
openssl pkey -in "$claim_key" -noout 2>/dev/null || usage "--claim-key $claim_key is not a PEM private key (or it is encrypted: the agent needs it in clear)"
openssl x509 -in "$root_ca" -noout 2>/dev/null || usage "--root-ca $root_ca is not a PEM certificate (AWS's is AmazonRootCA1.pem)"
if [ "$(openssl x509 -in "$claim_cert" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)" != \
  "$(openssl pkey -in "$claim_key" -pubout -outform DER | sha256sum)" ]; then
  usage "--claim-key $claim_key is not the key of --claim-cert $claim_cert"
fi
openssl x509 -in "$claim_cert" -noout -checkend 0 >/dev/null || usage "--claim-cert $claim_cert has expired"
[ "$(id -u)" -eq 0 ] || die "run as root: the files must belong to the image's users"

# in_image runs a command inside the image with a clean environment: the caller's (an
# EDGECAM_* variable, a PATH of this machine) is not the device's.
in_image() { env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 chroot "$@"; }

# --- the root file system ----------------------------------------------------------------
mnt= loopdev=
cleanup() {
  if [ -n "$mnt" ]; then umount "$mnt" 2>/dev/null || true; rmdir "$mnt" 2>/dev/null || true; fi
  if [ -n "$loopdev" ]; then losetup -d "$loopdev" 2>/dev/null || true; fi
}
trap cleanup EXIT
if [ -n "$image" ]; then
  [ -f "$image" ] || usage "no image at $image"
  command -v sfdisk >/dev/null || die "sfdisk is missing (apt-get install fdisk)"
  # The root partition: the largest Linux one (Raspberry Pi OS: partition 2, after the FAT
  # boot partition). Mounted through a loop device at its offset: no partition scanning,
  # so it works where udev does not make /dev/loopNpM.
  part=$(sfdisk -d "$image" 2>/dev/null | sed -nE 's/^.*start= *([0-9]+), *size= *([0-9]+), *type=(83|0FC63DAF-8483-4772-8E79-3D69D8477DE4).*$/\2 \1/ip' | sort -n | tail -n1)
  [ -n "$part" ] || die "$image has no Linux partition (type 83 or the GPT Linux type): is it a Raspberry Pi OS image?"
  read -r size start <<<"$part"
  sector=$(sfdisk -d "$image" | sed -nE 's/^sector-size: *([0-9]+)/\1/p')
  sector=${sector:-512}
  loopdev=$(losetup --find --show --offset $((start * sector)) --sizelimit $((size * sector)) "$image") ||
    die "no loop device for $image (losetup --find): in a container, give the unpacked root file system with --root instead"
  mnt=$(mktemp -d)
  mount "$loopdev" "$mnt" || die "cannot mount the root partition of $image ($loopdev)"
  root=$mnt
fi
[ -d "$root" ] || usage "no directory at $root"
root=$(cd "$root" && pwd)
[ "$root" != / ] || usage "--root / would change this machine, not an image"
[ -f "$root/var/lib/dpkg/status" ] || die "$root is not a Debian root file system (no var/lib/dpkg/status)"
[ -f "$root/etc/passwd" ] || die "$root has no etc/passwd"
arch=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Architecture}' dpkg 2>/dev/null) ||
  die "cannot tell the architecture of $root: its dpkg database lists no dpkg package"

if [ -n "$debs" ]; then
  [ -d "$debs" ] || usage "no directory at $debs"
  deb=$(find "$debs" -maxdepth 1 -name "edgecam_*_$arch.deb" -printf '%f\n' | sort -V | tail -n1)
  [ -n "$deb" ] || die "no edgecam_*_$arch.deb in $debs (the image is $arch): run make deb ARCH=$arch"
  deb=$debs/$deb
fi
[ -f "$deb" ] || usage "no package at $deb"
deb_arch=$(dpkg-deb -f "$deb" Architecture 2>/dev/null) || die "$deb is not a .deb"
[ "$(dpkg-deb -f "$deb" Package)" = edgecam ] || die "$deb is not the edgecam package"
[ "$deb_arch" = "$arch" ] || die "$deb is for $deb_arch, the image in $root is $arch"

# Can the image's own programs run here (natively or through qemu-user and binfmt_misc)?
chroot_ok=0
if [ "$no_chroot" = 0 ] && in_image "$root" /bin/true 2>/dev/null; then chroot_ok=1; fi
if [ "$with_deps" = 1 ] && [ "$chroot_ok" = 0 ]; then
  die "--with-deps runs the image's apt: it needs the image's programs to run here (apt-get install qemu-user-static, binfmt_misc mounted) and no --no-chroot"
fi

# --- install the package ---------------------------------------------------------------
echo "$prog: installing $(basename "$deb") into $root ($arch, $([ $chroot_ok = 1 ] && echo "image's dpkg in a chroot" || echo "host's dpkg, chrootless"))"
if [ "$chroot_ok" = 1 ]; then
  tmpdeb=$(mktemp "$root/tmp/edgecam-XXXXXX.deb")
  cp "$deb" "$tmpdeb"
  if [ "$with_deps" = 1 ]; then
    [ -e "$root/etc/resolv.conf" ] || cp /etc/resolv.conf "$root/etc/resolv.conf"
    in_image "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
      { rm -f "$tmpdeb"; die "apt-get update failed in the image (network? the image's sources.list?)"; }
    in_image "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "/tmp/$(basename "$tmpdeb")" ||
      { rm -f "$tmpdeb"; die "apt-get install of the package failed in the image"; }
  elif ! in_image "$root" env DEBIAN_FRONTEND=noninteractive dpkg -i "/tmp/$(basename "$tmpdeb")"; then
    rm -f "$tmpdeb"
    die "dpkg could not install the package in the image: install its dependencies first (--with-deps does it with the image's apt)"
  fi
  rm -f "$tmpdeb"
else
  # The image's dpkg database, the host's dpkg: the package's scripts see DPKG_ROOT.
  if ! DEBIAN_FRONTEND=noninteractive dpkg --root="$root" --force-script-chrootless --force-architecture \
    --log=/dev/null -i "$deb"; then
    die "dpkg could not install the package in $root: install its dependencies in the image first (the lines above name them)"
  fi
fi
status=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${db:Status-Status}' edgecam 2>/dev/null || true)
[ "$status" = installed ] || die "edgecam is '$status' in the image's dpkg database, not installed"

uid=$(awk -F: '$1 == "edgecam" {print $3}' "$root/etc/passwd")
gid=$(awk -F: '$1 == "edgecam" {print $3}' "$root/etc/group")
[ -n "$uid" ] && [ -n "$gid" ] || die "the package did not create the edgecam user in $root"

# --- identity material -----------------------------------------------------------------
etc=$root/etc/edgecam
install -d -m 0755 -o 0 -g 0 "$etc"
install -m 0600 -o "$uid" -g "$gid" "$claim_cert" "$etc/claim.pem"
install -m 0600 -o "$uid" -g "$gid" "$claim_key" "$etc/claim.key"
install -m 0644 -o 0 -g 0 "$root_ca" "$etc/AmazonRootCA1.pem"

# --- configuration: the documented file with this account's values ---------------------
conf=$etc/edgecam.yaml
[ -f "$conf" ] || die "the package left no $conf"
# set SECTION KEY VALUE: replaces "  KEY: …" inside the top-level "SECTION:" block (or the
# top-level "KEY: …" when SECTION is empty), quoted unless true or false. Fails when the key
# is not in the file.
set_key() {
  local section=$1 key=$2 value=$3 tmp
  tmp=$(mktemp)
  if ! awk -v s="$section" -v k="$key" -v v="$value" '
      BEGIN { in_s = (s == ""); done = 0 }
      /^[A-Za-z_][A-Za-z0-9_]*:/ { in_s = (s == "" || $0 ~ "^" s ":") }
      !done && in_s && ((s == "" && $0 ~ "^" k ":") || (s != "" && $0 ~ "^  " k ":")) {
        q = (v ~ /^(true|false)$/) ? "" : "\""; sub(/:.*/, ": " q v q); done = 1 }
      { print }
      END { exit done ? 0 : 1 }' "$conf" >"$tmp"; then
    rm -f "$tmp"
    die "$conf has no ${section:+$section.}$key to set: was the package's configuration replaced?"
  fi
  cat "$tmp" >"$conf" # keeps the owner and mode
  rm -f "$tmp"
}
set_key aws region "$region"
set_key iot endpoint "$iot"
set_key iot ca_cert /etc/edgecam/AmazonRootCA1.pem
set_key credentials endpoint "$creds"
set_key provisioning claim_cert /etc/edgecam/claim.pem
set_key provisioning claim_key /etc/edgecam/claim.key
[ -z "$template" ] || set_key provisioning template "$template"
[ -z "$role_alias" ] || set_key credentials role_alias "$role_alias"
set_key provisioning enabled true
chown "0:$gid" "$conf"
chmod 0640 "$conf"

# --- the service, enabled --------------------------------------------------------------
unit=/lib/systemd/system/edgecam.service
[ -f "$root$unit" ] || die "the package left no $unit"
wants=$root/etc/systemd/system/multi-user.target.wants
install -d -m 0755 "$wants"
ln -sfn "$unit" "$wants/edgecam.service"

# A device that is already provisioned would not provision again: the image must not carry
# an identity (a golden image made from a camera that ran).
if [ -n "$(find "$root/var/lib/edgecam" -mindepth 1 -maxdepth 1 2>/dev/null)" ]; then
  echo "$prog: warning: $root/var/lib/edgecam is not empty: every camera flashed from this image would share that identity" >&2
fi

# --- check it -------------------------------------------------------------------------
if [ "$chroot_ok" = 1 ]; then
  echo "$prog: edgecam config validate, inside the image as the edgecam user:"
  in_image --userspec="$uid:$gid" "$root" /usr/bin/edgecam config validate --config /etc/edgecam/edgecam.yaml ||
    die "the configuration in the image does not validate (above)"
else
  echo "$prog: the image's programs cannot run here: run 'edgecam config validate' on a device" >&2
fi
echo "$prog: done: $root provisions by claim on first boot ($iot, $region)"
