"""The taskstore's pure logic: task status rules, retries, CRDT session state. No I/O."""
