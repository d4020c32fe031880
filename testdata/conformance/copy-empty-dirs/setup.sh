# git cannot store empty directories
mkdir -p empty nested/a/b nested/c
chmod 0700 nested/c
