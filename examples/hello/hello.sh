#!/bin/sh
echo "$GREETING"
cat /app/message.txt
cat /app/buildinfo
echo "running as $(id -un)"
