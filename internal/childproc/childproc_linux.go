package childproc

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

type startReq struct {
	cmd *exec.Cmd
	err chan error
}

var (
	spawnOnce sync.Once
	spawnReqs chan startReq
)

// spawner forks every child from one OS thread that lives as long as the
// process: locked and never unlocked, in a goroutine that never returns.
func spawner() {
	runtime.LockOSThread()
	for r := range spawnReqs {
		r.err <- r.cmd.Start()
	}
}

func start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	spawnOnce.Do(func() {
		spawnReqs = make(chan startReq)
		go spawner()
	})
	r := startReq{cmd: cmd, err: make(chan error, 1)}
	spawnReqs <- r
	return <-r.err
}
