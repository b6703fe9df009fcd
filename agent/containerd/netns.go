package containerd

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// nsGetNSType is the ioctl that answers which kind of namespace a namespace file is (linux/nsfs.h:
// _IO(0xb7, 0x3)); x/sys/unix does not name it.
const nsGetNSType = 0xb703

// CheckNetNS says whether path is a network namespace tasks can join: a file of the kernel's
// namespace filesystem (a bind mount `ip netns add` made, or /proc/PID/ns/net) of a network
// namespace.
func CheckNetNS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("containerd: task network namespace: %w", err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("containerd: task network namespace %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("containerd: task network namespace %s is not a namespace (want /var/run/netns/NAME or /proc/PID/ns/net)", path)
	}
	kind, err := unix.IoctlRetInt(int(f.Fd()), nsGetNSType)
	if err != nil {
		return fmt.Errorf("containerd: task network namespace %s: %w", path, err)
	}
	if kind != unix.CLONE_NEWNET {
		return fmt.Errorf("containerd: task network namespace %s is a namespace of another kind than network", path)
	}
	return nil
}
