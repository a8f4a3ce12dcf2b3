module loopgain.dev/receiver-go

go 1.19
