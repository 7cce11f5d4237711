#!/usr/bin/perl
# The CUDA simulator's source rewrite (docs/CUDA-SIM.md): turns a .cu file into C++ that the host compiler takes
# with native/cuda_sim/include first on the include path. Two constructs are not C++:
#   kernel<<<grid, block, smem, stream>>>(args)  ->  ::ln_sim::launch("kernel", ::ln_sim::LaunchConfig(grid, block,
#                                                    smem, stream), kernel, args)
#   extern __shared__ __align__(16) T name[];    ->  T* name = ::ln_sim::dynamic_shared_as<T>();
# Line breaks are kept, so compiler messages point at the original lines (a #line directive names the file).
#   perl rewrite_cu.pl in.cu out.cpp
use strict;
use warnings;
my ($in, $out) = @ARGV;
die "usage: rewrite_cu.pl in.cu out.cpp\n" unless defined $out;
open(my $fh, '<', $in) or die "rewrite_cu.pl: cannot read $in: $!\n";
local $/;
my $src = <$fh>;
close $fh;

my $launches = 0;
# A kernel name, optionally with template arguments (no nested angle brackets in this code base), then <<<...>>>(.
$src =~ s{\b([A-Za-z_][\w:]*(?:<[^<>;{}]*>)?)(\s*)<<<(.*?)>>>(\s*)\((\s*\))?}{
  my ($name, $cfg, $empty) = ($1, $3, $5);
  $launches++;
  (my $label = $name) =~ s/\s+/ /g;
  "::ln_sim::launch(\"$label\", ::ln_sim::LaunchConfig($cfg), $name" . (defined $empty ? ")" : ", ");
}gse;

my $shared = 0;
$src =~ s{extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w:\s]*?)\s+(\w+)\s*\[\s*\]\s*;}{
  $shared++;
  "$1* $2 = ::ln_sim::dynamic_shared_as<$1>();";
}gse;

die "rewrite_cu.pl: $in: a <<< left unrewritten\n" if $src =~ /<<</;
die "rewrite_cu.pl: $in: an extern __shared__ left unrewritten\n" if $src =~ /extern\s+__shared__/;
open(my $oh, '>', "$out.tmp") or die "rewrite_cu.pl: cannot write $out.tmp: $!\n";
print $oh "#line 1 \"$in\"\n$src";
close $oh or die "rewrite_cu.pl: cannot write $out.tmp: $!\n";
rename("$out.tmp", $out) or die "rewrite_cu.pl: cannot rename to $out: $!\n";
