#!/usr/bin/env bash
# Here (not on the GPU machine), from the repository root: the bundled demo voice (~107 MB) is
# larger than what a device call may carry (the working tree, tracked files included, <= 64 MiB),
# so it steps out of the working tree and the index before device calls and back after them.
#   bash scripts/device/voice_aside.sh out    # before the device calls: the voice's deletion is staged
#   bash scripts/device/voice_aside.sh back   # after them: restored from HEAD, nothing staged
# Never commit between the two.
set -eu
V=resources/voices/demo
case ${1:-} in
  out) git rm -r -q --cached $V && rm -rf $V && echo "$V set aside (restore: $0 back)";;
  back) git reset -q HEAD -- $V && git checkout -- $V && echo "$V back";;
  *) echo "usage: $0 out|back"; exit 2;;
esac
