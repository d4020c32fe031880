# modes git does not keep
chmod 0664 a.txt
chmod 0755 exec.sh
chmod 0640 dir/file
