"""The gateway's pure logic: quotas and token buckets. No I/O."""
