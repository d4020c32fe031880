# git cannot store hardlinks
ln one.txt two.txt
ln one.txt dir/three.txt
ln dir/placeholder dir/placeholder-2
