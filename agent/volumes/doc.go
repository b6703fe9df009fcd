// Package volumes keeps an agent's persistent volumes (api.PersistentVolume): reserved disk that
// outlives the tasks that use it, bounded to its size, until the master says to destroy it.
//
// Design. Each volume is a file system of its own: an ext4 image file, loop-mounted.
//
//	DataDir/volumes/<id>/image.ext4   the image, its disk allocated up front (fallocate)
//	DataDir/volumes/<id>/root         where it is mounted (nosuid, nodev): the volume's root,
//	                                  which tasks get bind-mounted at their container_path
//
// A file system of its own is what bounds a volume for every writer, whatever its user: a write
// past the bound fails with ENOSPC inside the container, and what was written within it stays.
// (A directory with a project quota would need the data dir on XFS or on ext4 made with the
// quota feature; a loop device works on any file system the data dir is on.) The image's disk is
// allocated when the volume is made, so that a full host cannot turn a write the volume has room
// for into an I/O error of the loop device.
//
// The image is bigger than the volume by ext4's own overhead (inode tables, the journal, the
// clusters ext4 keeps back for delayed allocation; no blocks are reserved for root, -m 0), so
// that the space a task can use is at least the volume's Size. That overhead depends on the size
// and on e2fsprogs's defaults, so it is measured, not guessed: the image is made with a first
// estimate, mounted, and statfs's available space read; when it is short of Size, or more than
// a little over it (2 MiB, or 2 % of Size), the image is made again at Size plus the overhead
// seen (makeImage). Measured with e2fsprogs 1.47 on Linux 6.18, as a share of the image: 34 %
// of a 1 MiB volume's (4 MiB), 18 % at 8 MiB, 15 % at 64 MiB, 10 % at 300 MiB (images under
// 512 MiB get 1 KiB blocks and an inode per 4 KiB), 6 % at 1 GiB, 4 % at 4 GiB, 2.7 % at
// 10 GiB; what can be written exceeds Size by 1 to 16 MiB. Making an image (allocated, not
// written: mkfs.ext4 initializes inode tables lazily) and mounting it takes 10 to 60 ms on
// an idle machine (twice when the first estimate misses), up to about 400 ms on a loaded one.
//
// The tools are e2fsprogs's mkfs.ext4 and util-linux's mount and umount, run as programs: Go has
// no mkfs of its own, and mount(8) with -o loop finds a free loop device and attaches it with
// autoclear under its lock (what a LOOP_CTL_GET_FREE and LOOP_CONFIGURE of our own would race
// with other users of loop devices for), so that unmounting also frees the loop device. The
// agent must run as root.
//
// Use:
//
//  1. Open(Config{Dir, Book, Logger}) reads the volumes the Book (the agent's checkpoint) holds
//     and makes each usable again: one still mounted (the agent was killed) is left as it is,
//     one that is not (the host rebooted) is mounted anew. A volume the agent was making when it
//     stopped (never answered for, never used) is removed; one it was destroying is destroyed.
//     A directory under Dir that no record names is left alone and logged: the agent never
//     deletes a volume it was not told to destroy.
//  2. Ensure(pv) makes a volume if it has none of that id (ErrSizeConflict when it has one of
//     another size); the record is checkpointed as "creating" before anything is made, and as
//     "ready" only once the volume is mounted and checked.
//  3. Get, List and Usage read them; Given records that a task's user was given the root.
//  4. BeginDestroy marks a volume as being destroyed (checkpointed: a restart finishes it), so
//     that no task takes it meanwhile; Destroy then unmounts it, detaches any loop device still on
//     its image, removes the image and its directory, and forgets it.
//
// Release unmounts every volume of a dir and detaches their loop devices, keeping them: for a
// host whose agent is gone for good, and for tests, whose temporary data dirs must be removed.
//
// What uses a volume (the tasks) is the agent's to know: this package never refuses a destroy
// for that, and the agent asks BeginDestroy only when no live task mounts the volume.
package volumes
