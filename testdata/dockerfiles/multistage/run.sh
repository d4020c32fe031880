#!/bin/sh
cat /app/out.txt
echo "arg: $1"
cat /app/config.txt
ls /home
if [ -e /bin/vi ]; then echo "vi present"; else echo "vi gone"; fi
echo "user: $(id -un)"
