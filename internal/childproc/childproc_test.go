package childproc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// roleEnv selects what the re-executed test binary does: "parent" starts a
// grandchild with Start and prints its pid; "grandchild" sleeps.
const roleEnv = "BUCKETQ_CHILDPROC_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "grandchild":
		time.Sleep(2 * time.Minute) // bounded even if nothing kills it
		os.Exit(0)
	case "parent":
		parent()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// parent starts the grandchild from a goroutine locked to a thread that then
// exits (the runtime ends that thread): Start must not fork from the
// caller's thread, or Pdeathsig would fire right away. Then it waits to be
// killed.
func parent() {
	// Keep the main goroutine on its thread, so the goroutine below runs
	// on another one, which the runtime really ends (it never ends the
	// main thread, only wedges it).
	runtime.LockOSThread()
	pid := make(chan int)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), roleEnv+"=grandchild")
		if err := Start(cmd); err != nil {
			fmt.Fprintln(os.Stderr, "start grandchild:", err)
			os.Exit(1)
		}
		pid <- cmd.Process.Pid
	}()
	fmt.Println(<-pid)
	time.Sleep(2 * time.Minute)
}

// alive: the process exists and is not a zombie (a killed grandchild is
// reparented and may linger as a zombie until its new parent reaps it).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestChildDiesWithParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux only")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=parent")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the grandchild's pid: %v", err)
	}
	gpid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", line, err)
	}
	// If the test fails, do not leave the grandchild behind either.
	defer func() { _ = syscall.Kill(gpid, syscall.SIGKILL) }()

	// The thread that called Start has exited by now; the grandchild must
	// still run while its parent does.
	time.Sleep(300 * time.Millisecond)
	if !alive(gpid) {
		t.Fatalf("grandchild %d died while its parent still ran: it was forked from the caller's (exited) thread", gpid)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for alive(gpid) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still runs 5s after its parent was killed with SIGKILL", gpid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
