# enclave build helpers: filled in below
