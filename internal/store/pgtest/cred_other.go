//go:build !unix

package pgtest

import (
	"errors"
	"os/exec"
	"os/user"
)

// runAs cannot change users here.
func runAs(*exec.Cmd, *user.User) error {
	return errors.New("cannot run the server as another user on this system")
}
