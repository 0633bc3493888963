"""The gateway's adapters: each turns one protocol into Envelopes and Replies back."""
