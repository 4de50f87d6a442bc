//go:build !unix

package pgtest

import (
	"errors"
	"os/exec"
	"os/user"
)

// runAs cannot change users here.
func runAs(_ *exec.Cmd, u *user.User) error {
	if u != nil {
		return errors.New("cannot run the server as another user on this system")
	}
	return nil
}
