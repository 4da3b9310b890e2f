#!/bin/sh
# create_user.sh NAME ID: the image's non-root user NAME, with uid ID and a group NAME, gid ID.
#
# A user or group that already holds ID is removed first (a user with its home): ubuntu:24.04,
# under every nvidia/cuda:*-ubuntu24.04 image, ships user `ubuntu` with uid/gid 1000, and a plain
# `useradd --uid 1000` stops there with "UID 1000 is not unique".
set -eu
name=$1
id=$2
holder=$(getent passwd "$id" | cut -d: -f1) || true
if [ -n "$holder" ] && [ "$holder" != "$name" ]; then
    userdel --remove "$holder"
    echo "create-user: removed user $holder, which held uid $id"
fi
group=$(getent group "$id" | cut -d: -f1) || true
if [ -n "$group" ] && [ "$group" != "$name" ]; then
    groupdel "$group"
    echo "create-user: removed group $group, which held gid $id"
fi
getent group "$name" >/dev/null || groupadd --gid "$id" "$name"
getent passwd "$name" >/dev/null || useradd --create-home --uid "$id" --gid "$id" "$name"
