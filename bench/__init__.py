"""Benchmarks of fastloss against the memory-bandwidth floor and its peers."""
