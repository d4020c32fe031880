# Make a deterministic tar with owners, modes, a symlink and a hardlink.
mkdir -p src/dir/sub
echo one > src/one.txt
echo two > src/dir/sub/two.txt
chmod 0600 src/dir/sub/two.txt
chmod 0750 src/dir
ln -s one.txt src/link
ln src/one.txt src/hard
(cd src && tar --format=gnu --sort=name --mtime=@0 --numeric-owner --owner=1000 --group=1000 -cf ../archive.tar .)
rm -rf src
